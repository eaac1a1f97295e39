"""Where each tensor of a pickle lives in the pickled object: ``head.bias``, ``layers.0.weight``.

``torchpack diff`` and ``inspect`` name tensors the way a model's author knows them, not by
storage number. The pickle is never loaded: one pass over its opcodes builds a skeleton of
the object - dicts, lists, tuples, constants, and calls (``REDUCE``, ``NEWOBJ``) with the
state ``BUILD`` gives them - without importing or running anything. A walk of that skeleton
then names each tensor by the keys and attributes that lead to it. The containers an
``nn.Module`` keeps its members in (``_parameters``, ``_buffers``, ``_modules``) are left out
of the name, so a module's tensors are named exactly as in its ``state_dict()``.

Archives may be hostile, so the work is linear and bounded: each opcode adds at most one
node, a pickle of more than :data:`MAX_OPCODES` opcodes is not named at all, the walk visits
each node once (shared and cyclic references cannot multiply it), and a name is at most
:data:`MAX_DEPTH` steps long.
"""

from __future__ import annotations

import pickletools
from collections.abc import Iterable
from dataclasses import dataclass, field

from .. import _records as records
from .._archive_reader import ArchiveReader
from .._pickle_scan import _MARK, STORAGE_DTYPES, StorageReference, _Global, _storage_reference, _SymbolicStack
from ..errors import ArchiveFormatError
from .archive_graph import record_data

__all__ = ["MAX_DEPTH", "MAX_OPCODES", "NamedTensor", "storage_tensors", "tensor_names"]

#: Opcodes modelled per pickle (as many as ``torchpack diff`` lists); past this the tensors
#: keep their storage names. Each opcode adds at most one node of about 100 bytes.
MAX_OPCODES = 200_000
#: Steps in a name; tensors nested deeper are not named.
MAX_DEPTH = 64
#: Where ``nn.Module`` keeps its members: not part of a member's name.
_MODULE_CONTAINERS = frozenset({"_parameters", "_buffers", "_modules"})
#: The functions torch pickles a tensor as: (storage, offset, size, stride, ...).
_REBUILD_TENSOR = frozenset({"_rebuild_tensor", "_rebuild_tensor_v2", "_rebuild_tensor_v3", "_rebuild_qtensor"})


@dataclass(frozen=True)
class NamedTensor:
    """One tensor: its name in the pickled object, shape, dtype and the storage holding it."""

    name: str
    shape: tuple[int, ...] | None
    dtype: str
    storage: StorageReference


@dataclass(slots=True)
class _Call:
    """An object a pickle builds by calling something: ``REDUCE``, ``NEWOBJ``, ``OBJ``, ``INST``."""

    callable: object
    arguments: object
    state: object = None
    items: list[tuple[object, object]] = field(default_factory=list)  # SETITEM(S) on it
    appended: list[object] = field(default_factory=list)  # APPEND(S) on it


@dataclass(slots=True)
class _Dict:
    items: list[tuple[object, object]] = field(default_factory=list)


@dataclass(slots=True)
class _List:
    items: list[object] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class _Storage:
    reference: StorageReference


def _pairs(flat: list[object]) -> list[tuple[object, object]]:
    return list(zip(flat[0::2], flat[1::2]))


def _skeleton(data: bytes) -> object:
    """The object the pickle builds, as nodes of the classes above; raises ValueError."""
    stack = _SymbolicStack()
    opaque = object()
    for count, (opcode, arg, _position) in enumerate(pickletools.genops(data)):
        if count == MAX_OPCODES:
            raise ValueError(f"more than {MAX_OPCODES:,} opcodes")
        name = opcode.name
        items = stack.items
        if name == "STOP":
            return stack.pop()
        if name in ("PROTO", "FRAME"):
            continue
        if name == "MARK":
            items.append(_MARK)
        elif name in ("EMPTY_DICT", "DICT"):
            items.append(_Dict(_pairs(stack.pop_to_mark()) if name == "DICT" else []))
        elif name in ("EMPTY_LIST", "LIST"):
            items.append(_List(stack.pop_to_mark() if name == "LIST" else []))
        elif name == "EMPTY_TUPLE":
            items.append(())
        elif name == "TUPLE":
            items.append(tuple(stack.pop_to_mark()))
        elif name in ("TUPLE1", "TUPLE2", "TUPLE3"):
            items.append(tuple(stack.pop_many(int(name[-1]))))
        elif name in ("SETITEM", "SETITEMS"):
            added = stack.pop_many(2) if name == "SETITEM" else stack.pop_to_mark()
            target = items[-1] if items else None
            if isinstance(target, (_Dict, _Call)):  # a _Call: an OrderedDict and the like
                target.items.extend(_pairs(added))
        elif name in ("APPEND", "APPENDS"):
            added = stack.pop_many(1) if name == "APPEND" else stack.pop_to_mark()
            target = items[-1] if items else None
            if isinstance(target, _List):
                target.items.extend(added)
            elif isinstance(target, _Call):
                target.appended.extend(added)
        elif name == "GLOBAL":
            module, _, qualname = arg.partition(" ")
            items.append(_Global(module, qualname))
        elif name == "STACK_GLOBAL":
            qualname, module = stack.pop(), stack.pop()
            items.append(_Global(module, qualname) if isinstance(module, str) and isinstance(qualname, str) else opaque)
        elif name in ("REDUCE", "NEWOBJ"):
            arguments = stack.pop()
            items.append(_Call(stack.pop(), arguments))
        elif name == "NEWOBJ_EX":
            stack.pop()  # keyword arguments: never a tensor's place in torch's pickles
            arguments = stack.pop()
            items.append(_Call(stack.pop(), arguments))
        elif name in ("OBJ", "INST"):
            popped = stack.pop_to_mark()
            if name == "INST":
                module, _, qualname = arg.partition(" ")
                items.append(_Call(_Global(module, qualname), tuple(popped)))
            else:
                items.append(_Call(popped[0], tuple(popped[1:])) if popped else opaque)
        elif name == "BUILD":
            state = stack.pop()
            if items and isinstance(items[-1], _Call):
                items[-1].state = state
        elif name == "BINPERSID":
            reference = _storage_reference(stack.pop())
            items.append(_Storage(reference) if reference is not None else opaque)
        elif name in ("PUT", "BINPUT", "LONG_BINPUT"):
            stack.memo[arg] = items[-1]
        elif name == "MEMOIZE":
            stack.memo[len(stack.memo)] = items[-1]
        elif name in ("GET", "BINGET", "LONG_BINGET"):
            items.append(stack.memo.get(arg, opaque))
        elif name == "POP":
            stack.pop()
        elif name == "POP_MARK":
            stack.pop_to_mark()
        elif name == "DUP":
            items.append(items[-1])
        elif name in ("NONE", "NEWTRUE", "NEWFALSE"):
            items.append({"NONE": None, "NEWTRUE": True, "NEWFALSE": False}[name])
        elif opcode.arg is not None and not opcode.stack_before and len(opcode.stack_after) == 1 and name != "PERSID":
            items.append(arg)  # a constant: int, float, str or bytes
        else:
            stack.apply_effect(opcode)
    raise ValueError("pickle ends without STOP")


def _tensor(call: _Call) -> NamedTensor | None:
    """The tensor a ``torch._utils._rebuild_tensor*`` call makes (named by the caller), or None."""
    function = call.callable
    if not (isinstance(function, _Global) and function.module == "torch._utils" and function.name in _REBUILD_TENSOR):
        return None
    arguments = call.arguments if isinstance(call.arguments, tuple) else ()
    if not arguments or not isinstance(arguments[0], _Storage):
        return None
    reference = arguments[0].reference
    size = arguments[2] if len(arguments) > 2 else None
    shape = size if isinstance(size, tuple) and all(isinstance(n, int) for n in size) else None
    dtype = reference.dtype
    # _rebuild_tensor_v3 pickles an UntypedStorage and gives the dtype as its 7th argument.
    if function.name == "_rebuild_tensor_v3" and len(arguments) > 6 and isinstance(arguments[6], _Global):
        dtype = arguments[6].name
    return NamedTensor("", shape, dtype, reference)


def _children(node: object) -> list[tuple[str | None, object]]:
    """``(step, child)`` for what ``node`` holds; a None step adds nothing to the name."""
    if isinstance(node, _Dict):
        return [(_key_step(key), value) for key, value in node.items]
    if isinstance(node, (_List, tuple)):
        return [(f"[{index}]", value) for index, value in enumerate(node.items if isinstance(node, _List) else node)]
    if not isinstance(node, _Call):
        return []
    arguments = node.arguments if isinstance(node.arguments, tuple) else ()
    # The first argument is what a wrapper wraps (_rebuild_parameter's tensor); others are indexed.
    children: list[tuple[str | None, object]] = [
        (None if index == 0 else f"[{index}]", value) for index, value in enumerate(arguments)
    ]
    state = node.state
    # BUILD's state is the attribute dict, or (dict, slots) for classes with __slots__.
    for part in (state if isinstance(state, tuple) else (state,)):
        if isinstance(part, _Dict):
            children += [(None if key in _MODULE_CONTAINERS else _key_step(key), value) for key, value in part.items]
    children += [(_key_step(key), value) for key, value in node.items]
    children += [(f"[{index}]", value) for index, value in enumerate(node.appended)]
    return children


def _key_step(key: object) -> str:
    return key if isinstance(key, str) else f"[{key!r}]" if isinstance(key, (int, float, bytes)) else "[?]"


@dataclass(frozen=True, slots=True)
class _Path:
    """A name as a chain from its last step up to the root, so that each pending node of the
    walk costs one small object however deep it lies."""

    step: str
    parent: _Path | None
    depth: int


def _join(path: _Path | None) -> str:
    reversed_steps: list[str] = []
    while path is not None:
        reversed_steps.append(path.step)
        path = path.parent
    name = ""
    for step in reversed(reversed_steps):
        name += step if step.startswith("[") or not name else f".{step}"
    return name


def tensor_names(data: bytes | memoryview) -> list[NamedTensor]:
    """Every tensor of a pickle, named by its place in the object, in the pickle's order.

    A tensor reached along several paths (shared, tied weights) is named by the first.
    Raises ValueError for a malformed pickle or one past :data:`MAX_OPCODES`.
    """
    try:
        root = _skeleton(bytes(data))
    except IndexError:
        raise ValueError("malformed pickle: an opcode pops more than the stack holds") from None
    found: list[NamedTensor] = []
    seen: set[int] = set()
    pending: list[tuple[_Path | None, object]] = [(None, root)]
    while pending:
        path, node = pending.pop()
        if id(node) in seen or not isinstance(node, (_Call, _Dict, _List, tuple, _Storage)):
            continue
        seen.add(id(node))
        tensor = _tensor(node) if isinstance(node, _Call) else None
        if tensor is not None:
            found.append(NamedTensor(_join(path), tensor.shape, tensor.dtype, tensor.storage))
            continue
        if isinstance(node, _Storage):  # a storage pickled by itself
            dtype = STORAGE_DTYPES.get(node.reference.storage_class, node.reference.dtype)
            found.append(NamedTensor(_join(path), None, dtype, node.reference))
            continue
        depth = path.depth if path is not None else 0
        if depth == MAX_DEPTH:
            continue
        # Reversed onto the stack, so that children are walked in the pickle's order.
        for step, child in reversed(_children(node)):
            pending.append((_Path(step, path, depth + 1) if step is not None else path, child))
    return found


def storage_tensors(reader: ArchiveReader, pickle_records: Iterable[str]) -> dict[str, list[tuple[str, NamedTensor]]]:
    """Storage record -> (pickle record, named tensor) for each tensor of ``pickle_records``.

    A pickle that cannot be named (malformed, too large) is left out; callers fall back to
    the storage numbers :func:`torchpack._pickle_scan.scan_pickle` gives.
    """
    users: dict[str, list[tuple[str, NamedTensor]]] = {}
    for record in pickle_records:
        try:
            named = tensor_names(record_data(reader, record))
        except (ValueError, ArchiveFormatError):
            continue
        for tensor in named:
            users.setdefault(records.storage_record(tensor.storage.key), []).append((record, tensor))
    return users
