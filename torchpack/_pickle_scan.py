"""What a pickle refers to, read from its opcodes without unpickling it.

Inspection tools must look at an archive they do not trust, so nothing here imports a
module or builds an object. One pass over :func:`pickletools.genops` runs a symbolic stack:
constants are kept (the strings ``STACK_GLOBAL`` and persistent ids are made of, possibly
fetched back from the memo), everything else becomes an opaque placeholder. That is enough
to list every global a pickle loads and every tensor storage it points at through the
``('storage', <storage class>, key, location, numel)`` persistent ids torch writes.
"""

from __future__ import annotations

import pickletools
from dataclasses import dataclass

#: Element type of each legacy typed-storage class torch pickles; ``UntypedStorage`` counts bytes.
STORAGE_DTYPES = {
    "DoubleStorage": "float64",
    "FloatStorage": "float32",
    "HalfStorage": "float16",
    "BFloat16Storage": "bfloat16",
    "LongStorage": "int64",
    "IntStorage": "int32",
    "ShortStorage": "int16",
    "CharStorage": "int8",
    "ByteStorage": "uint8",
    "BoolStorage": "bool",
    "ComplexDoubleStorage": "complex128",
    "ComplexFloatStorage": "complex64",
    "QInt8Storage": "qint8",
    "QInt32Storage": "qint32",
    "QUInt8Storage": "quint8",
    "QUInt4x2Storage": "quint4x2",
    "QUInt2x4Storage": "quint2x4",
    "UntypedStorage": "uint8",
}


@dataclass(frozen=True)
class StorageReference:
    """One storage a pickle points at: the record ``.data/<key>.storage`` read as ``numel`` x ``dtype``."""

    key: str
    storage_class: str
    dtype: str
    location: str
    numel: int


@dataclass(frozen=True)
class PickleScan:
    """The globals (``(module, qualified name)``) and storages of one pickle, in first-use order."""

    protocol: int
    globals: tuple[tuple[str, str], ...]
    storages: tuple[StorageReference, ...]


@dataclass(frozen=True)
class _Global:
    module: str
    name: str


class _Opaque:
    """A stack value the scan does not model (a list, an object under construction...)."""


_OPAQUE = _Opaque()
_MARK = object()
#: The PROTO opcode, the first byte of every pickle of protocol 2 or later.
_PROTO = b"\x80"
_PUT_OPS = frozenset({"PUT", "BINPUT", "LONG_BINPUT"})
_GET_OPS = frozenset({"GET", "BINGET", "LONG_BINGET"})
_FIXED_VALUES = {"NONE": None, "NEWTRUE": True, "NEWFALSE": False, "EMPTY_TUPLE": ()}
_TUPLE_SIZES = {"TUPLE1": 1, "TUPLE2": 2, "TUPLE3": 3}
# Opcodes with an argument that push something other than that argument.
_ARG_IS_NOT_VALUE = frozenset({"EXT1", "EXT2", "EXT4", "PERSID"})


def _text(value: object) -> str | None:
    if isinstance(value, bytes):
        return value.decode("ascii", "replace")
    return value if isinstance(value, str) else None


def _storage_reference(pid: object) -> StorageReference | None:
    """The storage a persistent id names, or None for other ids (``reduce_package``...)."""
    if not isinstance(pid, tuple) or len(pid) != 5 or _text(pid[0]) != "storage":
        return None
    _, storage_class, key, location, numel = pid
    class_name = storage_class.name if isinstance(storage_class, _Global) else "?"
    return StorageReference(
        key=_text(key) or str(key),  # torch.package writes str keys, torchpack int ones
        storage_class=class_name,
        dtype=STORAGE_DTYPES.get(class_name, "unknown"),
        location=_text(location) or "?",
        numel=numel if isinstance(numel, int) else -1,
    )


class _SymbolicStack:
    """The unpickler's stack and memo, holding constants and placeholders instead of objects."""

    def __init__(self) -> None:
        self.items: list[object] = []
        self.memo: dict[int, object] = {}

    def pop(self) -> object:
        return self.items.pop()

    def pop_to_mark(self) -> list[object]:
        position = len(self.items) - 1
        while position >= 0 and self.items[position] is not _MARK:
            position -= 1
        if position < 0:
            raise IndexError("no mark on the stack")
        popped = self.items[position + 1 :]
        del self.items[position:]
        return popped

    def pop_many(self, count: int) -> list[object]:
        if count > len(self.items):
            raise IndexError("stack underflow")
        popped = self.items[len(self.items) - count :]
        del self.items[len(self.items) - count :]
        return popped

    def apply_effect(self, opcode: pickletools.OpcodeInfo) -> None:
        """Pop what ``opcode`` consumes and push a placeholder for each thing it produces."""
        before = opcode.stack_before
        if pickletools.markobject in before:
            self.pop_to_mark()
            self.pop_many(before.index(pickletools.markobject))
        else:
            self.pop_many(len(before))
        self.items.extend(_OPAQUE for _ in opcode.stack_after)


def scan_pickle(data: bytes | memoryview) -> PickleScan:
    """Globals and storage references of a pickle; raises ValueError when it is malformed."""
    stack = _SymbolicStack()
    found_globals: dict[tuple[str, str], None] = {}
    storages: dict[str, StorageReference] = {}
    protocol = 0
    try:
        for opcode, arg, _position in pickletools.genops(bytes(data)):
            name = opcode.name
            if name == "PROTO":
                protocol = arg
            elif name in ("GLOBAL", "INST"):
                module, _, qualname = arg.partition(" ")
                found_globals[(module, qualname)] = None
                if name == "INST":
                    stack.pop_to_mark()
                stack.items.append(_Global(module, qualname))
            elif name == "STACK_GLOBAL":
                qualname, module = _text(stack.pop()), _text(stack.pop())
                if module is not None and qualname is not None:
                    found_globals[(module, qualname)] = None
                    stack.items.append(_Global(module, qualname))
                else:
                    stack.items.append(_OPAQUE)
            elif name in _PUT_OPS:
                stack.memo[arg] = stack.items[-1]
            elif name == "MEMOIZE":
                stack.memo[len(stack.memo)] = stack.items[-1]
            elif name in _GET_OPS:
                stack.items.append(stack.memo.get(arg, _OPAQUE))
            elif name == "MARK":
                stack.items.append(_MARK)
            elif name == "TUPLE":
                stack.items.append(tuple(stack.pop_to_mark()))
            elif name in _TUPLE_SIZES:
                stack.items.append(tuple(stack.pop_many(_TUPLE_SIZES[name])))
            elif name in _FIXED_VALUES:
                stack.items.append(_FIXED_VALUES[name])
            elif name == "BINPERSID":
                reference = _storage_reference(stack.pop())
                if reference is not None:
                    storages.setdefault(reference.key, reference)
                stack.items.append(_OPAQUE)
            elif opcode.arg is not None and not opcode.stack_before and len(opcode.stack_after) == 1 \
                    and name not in _ARG_IS_NOT_VALUE:
                stack.items.append(arg)  # a constant: int, float, str or bytes
            else:
                stack.apply_effect(opcode)
    except IndexError:
        raise ValueError("malformed pickle: an opcode pops more than the stack holds") from None
    return PickleScan(protocol, tuple(found_globals), tuple(storages.values()))


def is_pickle(name: str, data: bytes | memoryview) -> bool:
    """Whether a record holds a pickle: named ``*.pkl``, or starting with the PROTO opcode."""
    return name.endswith(".pkl") or bytes(data[:1]) == _PROTO
