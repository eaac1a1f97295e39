"""Packaged (model.py imports it in a function), yet it imports at its top a package that is
not installed: `torchpack plan` mocks that package."""

import torchpack_absent_plan_required  # noqa: F401
