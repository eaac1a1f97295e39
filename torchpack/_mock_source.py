"""Source text of the stand-ins written for mocked modules.

A mocked module ``m`` is packaged as a tiny module whose every attribute is a
``MockedObject``: ``from m import thing`` succeeds, and any use of ``thing`` (calling it,
arithmetic, iteration, ...) raises ``NotImplementedError`` naming what was mocked. The
support code lives in one ``_mock`` module inside the package; the source below is plain
Python so that torch.package loads our mocked modules too.
"""

MOCK_SUPPORT_MODULE = "_mock"

MOCK_SUPPORT_SOURCE = '''\
"""Stand-in objects for modules that were mocked when this package was exported."""

_FORBIDDEN = (
    "__call__", "__iter__", "__len__", "__bool__", "__contains__", "__getitem__",
    "__setitem__", "__delitem__", "__enter__", "__exit__", "__int__", "__float__",
    "__index__", "__add__", "__radd__", "__sub__", "__rsub__", "__mul__", "__rmul__",
    "__truediv__", "__rtruediv__", "__floordiv__", "__mod__", "__pow__", "__matmul__",
    "__neg__", "__pos__", "__abs__", "__lt__", "__le__", "__gt__", "__ge__", "__hash__",
    "__await__", "__next__",
)


def _refuse(method_name):
    def refuse(self, *args, **kwargs):
        raise NotImplementedError(
            f"Object '{object.__getattribute__(self, '_mock_name')}' was mocked out during "
            f"packaging but it is being used in '{method_name}'"
        )
    refuse.__name__ = method_name
    return refuse


class MockedObject:
    """Placeholder for an object of a mocked module; using it raises NotImplementedError."""

    _mock_name: str

    def __new__(cls, *args, **kwargs):
        # Pickles may rebuild a MockedObject with arguments (copyreg) or without (__new__).
        if not kwargs.get("_suppress_err"):
            raise NotImplementedError(
                f"Object '{cls.__name__}' was mocked out during packaging but it is being used in '__new__'"
            )
        return super().__new__(cls)

    def __init__(self, name, _suppress_err=False):
        object.__setattr__(self, "_mock_name", name)

    def __getattr__(self, attr):
        return MockedObject(f"{object.__getattribute__(self, '_mock_name')}.{attr}", _suppress_err=True)

    def __repr__(self):
        return f"MockedObject({object.__getattribute__(self, '_mock_name')})"


for _method_name in _FORBIDDEN:
    setattr(MockedObject, _method_name, _refuse(_method_name))
del _method_name
'''

MOCKED_MODULE_SOURCE = """\
from _mock import MockedObject


def __getattr__(attr):
    return MockedObject(__name__ + "." + attr, _suppress_err=True)
"""
