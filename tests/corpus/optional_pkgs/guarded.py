"""Imports of missing modules that never run on import: the module works without them."""

try:
    import torchpack_absent_try
except ImportError:
    torchpack_absent_try = None

try:
    from torchpack_absent_exception.sub import thing  # noqa: F401
except Exception:
    thing = None


def _is_available() -> bool:
    return False


if _is_available():
    import torchpack_absent_if.api


def accelerated() -> str:
    import torchpack_absent_deferred

    return torchpack_absent_deferred.NAME


class Model:
    def fast_path(self) -> str:
        from torchpack_absent_method import kernel

        return kernel()


def value() -> int:
    return 42 if torchpack_absent_try is None and thing is None else -1
