"""An unconditional top-level import of a missing module: the module cannot import."""

import torchpack_absent_required  # noqa: F401
