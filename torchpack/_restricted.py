"""Restricted loading: an unpickler for archives that are not trusted.

Unpickling calls whatever a pickle names - ``os.system`` as readily as a model class - and a
package also carries code that importing runs. Restricted loading is built to be at least as
strict as ``torch.load(weights_only=True)``:

* Globals are looked up, never imported, when they are on the default list (what tensors,
  storages, parameters and plain containers need): the pickle gets exactly that object.
  Anything else must be matched by ``allowed_globals`` (module and qualified name matched
  separately) or live in one of the package's own modules that the caller trusts; a
  qualified name never steps through a module, and what it reaches is checked again under
  its own name.
* No packaged module runs unless ``trusted_modules`` names it.
* Every opcode is accounted for: calls (REDUCE, NEWOBJ) only of allowed callables, state
  (BUILD) only on OrderedDicts and allowed classes, items only into lists, dicts and sets;
  the protocol 0/1 class opcodes, the extension registry and out-of-band buffers are refused.
* What the default callables may allocate is charged to a budget proportional to the
  pickle's size, so a 40-byte pickle cannot ask for ``bytearray(3 << 30)``.
"""

from __future__ import annotations

import collections
import io
import pickle
import struct
from collections.abc import Callable, Iterable
from types import BuiltinFunctionType, FunctionType, ModuleType
from typing import Any

import torch

from ._gc import collector_paused
from ._globbing import GlobGroup, compile_glob
from ._mangling import demangle
from ._storage import CHECKED_REBUILDS, DATA_ERRORS, checked_rebuild, rebuild_tensor
from .errors import PickleDataError, RestrictedLoadError, TorchpackError

#: The allocation budget of one restricted ``load_pickle``: this many bytes per pickle byte...
ALLOCATION_PER_PICKLE_BYTE = 64
#: ... plus this many bytes.
ALLOCATION_ALLOWANCE = 64 << 20
#: What one element of a set, deque, dict or ``torch.Size`` is charged (object and slot).
_ELEMENT_COST = 64


def _default_data() -> dict[tuple[str, str], Any]:
    """Globals a pickle may name but never call: storage classes, dtypes and other constants."""
    found: dict[tuple[str, str], Any] = {
        ("torch", "UntypedStorage"): torch.UntypedStorage,
        ("torch.storage", "UntypedStorage"): torch.UntypedStorage,
        # The types _rebuild_from_type_v2 is given; never called (they are no callables here).
        ("torch", "Tensor"): torch.Tensor,
        ("torch.nn.parameter", "Parameter"): torch.nn.Parameter,
    }
    for name, value in vars(torch).items():
        constant = isinstance(value, (torch.dtype, torch.memory_format, torch.qscheme))
        if constant or (isinstance(value, type) and issubclass(value, torch.storage._LegacyStorage)):
            found[("torch", name)] = value
    return found


#: Elements a container constructor will hold, by the type of what it is built from: only
#: containers that are already built (or a range, whose length is known) - not a tensor or
#: another iterable whose length could be far more than its size in the pickle.
_SIZED_TYPES = frozenset(
    {list, tuple, set, frozenset, dict, collections.OrderedDict, str, bytes, bytearray, collections.deque, range}
)


def _length(value: Any) -> int:
    if type(value) not in _SIZED_TYPES:
        raise PickleDataError(f"a container is built from a {type(value).__name__}, not from a plain container")
    try:
        return len(value)
    except OverflowError:  # a range longer than sys.maxsize
        return 1 << 64


def _elements_cost(args: tuple[Any, ...]) -> int:
    return _ELEMENT_COST * _length(args[0]) if args else 0


def _factory_cost(args: tuple[Any, ...]) -> int:
    return _ELEMENT_COST * _length(args[1]) if len(args) > 1 else 0


def _bytearray_cost(args: tuple[Any, ...]) -> int:
    if args and type(args[0]) is int:
        return args[0]
    return _length(args[0]) if args else 0


def _no_cost(args: tuple[Any, ...]) -> int:
    for arg in args:
        if type(arg) not in (int, float, str, bool, type(None)):
            raise PickleDataError(f"an odd argument of type {type(arg).__name__}")
    return 0


def _hooks_at(index: int | None) -> Callable[[tuple[Any, ...]], int]:
    """The cost check of a tensor rebuild: nothing (storage records bound tensors, see
    check_extent), but no backward hooks - they would run later, with the gradient."""

    def cost(args: tuple[Any, ...]) -> int:
        if index is not None and len(args) > index and args[index]:
            raise RestrictedLoadError("a tensor is rebuilt with backward hooks")
        return 0

    return cost


def _check_tensor_state(state: Any) -> None:
    # torch sets each entry of a tensor's saved state as an attribute: plain names only
    # (not `__class__`), in a dict or a (dict, slots dict) pair.
    parts = state if type(state) is tuple else (state,)
    for part in parts:
        if part is not None and (type(part) is not dict or not all(_plain_attribute(key) for key in part)):
            raise RestrictedLoadError("a tensor is rebuilt with odd attributes")


def _parameter_state_cost(args: tuple[Any, ...]) -> int:
    _check_tensor_state(args[3] if len(args) > 3 else None)
    return _hooks_at(2)(args)


def _plain_attribute(name: Any) -> bool:
    return type(name) is str and not name.startswith("__")


#: The default callables: (module, qualname) -> (the object, what calling it costs).
_DEFAULT_CALLABLES: dict[tuple[str, str], tuple[Any, Callable[[tuple[Any, ...]], int]]] = {
    ("torch._utils", "_rebuild_tensor"): (torch._utils._rebuild_tensor, _hooks_at(None)),
    ("torch._utils", "_rebuild_tensor_v2"): (torch._utils._rebuild_tensor_v2, _hooks_at(5)),
    ("torch._utils", "_rebuild_parameter"): (torch._utils._rebuild_parameter, _hooks_at(2)),
    ("torch._utils", "_rebuild_parameter_with_state"): (torch._utils._rebuild_parameter_with_state, _parameter_state_cost),
    ("torch._utils", "_rebuild_sparse_tensor"): (torch._utils._rebuild_sparse_tensor, _hooks_at(None)),
    ("torch._utils", "_rebuild_qtensor"): (torch._utils._rebuild_qtensor, _hooks_at(6)),
    ("torch._utils", "_rebuild_meta_tensor_no_storage"): (torch._utils._rebuild_meta_tensor_no_storage, _hooks_at(None)),
    # Checked by the unpickler itself (see _check_rebuild_from_type).
    ("torch._tensor", "_rebuild_from_type_v2"): (torch._tensor._rebuild_from_type_v2, _hooks_at(None)),
    ("torch", "Size"): (torch.Size, _elements_cost),
    ("torch", "device"): (torch.device, _no_cost),
    ("torch.serialization", "_get_layout"): (torch.serialization._get_layout, _no_cost),
    ("collections", "OrderedDict"): (collections.OrderedDict, _elements_cost),
    # Its factory is checked by the unpickler (see _charge).
    ("collections", "defaultdict"): (collections.defaultdict, _factory_cost),
    ("collections", "deque"): (collections.deque, _elements_cost),
    ("builtins", "set"): (set, _elements_cost),
    ("builtins", "frozenset"): (frozenset, _elements_cost),
    ("builtins", "bytearray"): (bytearray, _bytearray_cost),
    ("builtins", "complex"): (complex, _no_cost),
    ("builtins", "slice"): (slice, _no_cost),
    ("builtins", "range"): (range, _no_cost),
}

#: Every default global (find_class hands out tensor rebuilds by their checked versions).
DEFAULT_GLOBALS: dict[tuple[str, str], Any] = {
    **_default_data(),
    **{key: function for key, (function, _cost) in _DEFAULT_CALLABLES.items()},
}
#: id of a callable the pickle may call (as find_class hands it out) -> what a call costs.
_CALL_COSTS: dict[int, Callable[[tuple[Any, ...]], int]] = {
    id(CHECKED_REBUILDS.get(function, function)): cost for function, cost in _DEFAULT_CALLABLES.values()
}
_CALL_COSTS[id(rebuild_tensor)] = _CALL_COSTS[id(CHECKED_REBUILDS[torch._utils._rebuild_tensor_v2])]
_REBUILD_FROM_TYPE = CHECKED_REBUILDS[torch._tensor._rebuild_from_type_v2]
#: The functions _rebuild_from_type_v2 may be asked to call.
_TENSOR_REBUILDS = frozenset(id(function) for function in (*CHECKED_REBUILDS.values(), rebuild_tensor))
#: Objects whose instances take state (BUILD) or items although no allow-list names them.
_LIST_TYPES = (list, collections.deque)
_DICT_TYPES = (dict, collections.OrderedDict)
_NAMED_TYPES = (type, FunctionType, BuiltinFunctionType)


class AllowList:
    """``allowed_globals``: entries ``module:qualname`` (each a glob over dotted names, the
    module part matched against the module the pickle names) or, as before, ``module.name``
    globs over the whole dotted name, which then only match top-level names (no dots in the
    qualified name): ``torch.nn.modules.**`` allows ``torch.nn.modules.linear.Linear`` but
    not ``torch.nn.modules.module`` + ``torch.serialization.os.system``."""

    def __init__(self, entries: Iterable[str]) -> None:
        self._split: list[tuple[Any, Any]] = []
        dotted: list[str] = []
        for entry in [entries] if isinstance(entries, str) else entries:
            module, colon, qualname = entry.partition(":")
            if colon:
                self._split.append((compile_glob(module), compile_glob(qualname)))
            else:
                dotted.append(entry)
        self._dotted = GlobGroup(dotted) if dotted else None

    def matches(self, module: str, qualname: str) -> bool:
        if self._dotted is not None and "." not in qualname and self._dotted.matches(f"{module}.{qualname}"):
            return True
        return any(m.fullmatch(f".{module}") and q.fullmatch(f".{qualname}") for m, q in self._split)


class GlobalPolicy:
    """What a restricted importer may resolve and run: the defaults, ``allowed_globals``, and
    its own modules (``owns``: those that load from the archive) when ``trusted_modules`` names them."""

    def __init__(self, owns: Callable[[str], bool], allowed: Iterable[str] = (), trusted: Iterable[str] = ()) -> None:
        self._owns = owns
        self._allowed = AllowList(allowed)
        trusted = [trusted] if isinstance(trusted, str) else list(trusted)
        self._trusted = GlobGroup(trusted) if trusted else None

    def trusts(self, module: str) -> bool:
        return self._trusted is not None and self._trusted.matches(module)

    def packaged_untrusted(self, module: str) -> bool:
        """Whether ``module`` would load (and run) from the archive without the caller's trust."""
        return self._owns(module) and not self.trusts(module)

    def names_allowed(self, module: str, qualname: str) -> bool:
        """Whether a global outside the defaults may be resolved (packaged ones need trust)."""
        if self._owns(module):
            return self.trusts(module)
        return self._allowed.matches(module, qualname)


def untrusted_code_message(archive: str, module: str, where: str) -> str:
    top = module.partition(".")[0]
    return (
        f"{archive}: {where} the packaged module {module}, whose code restricted loading does not run; "
        f"if you trust it, pass trusted_modules=[{module!r}] (or a glob such as '{top}.**') to PackageImporter"
    )


class _RefusedOpcode(Exception):
    """An opcode restricted loading has no handler for (reported with the archive's name)."""


class _Dispatch(dict):
    def __missing__(self, opcode: int) -> Any:
        raise _RefusedOpcode(bytes([opcode]))


#: Opcodes that only build plain data from the pickle's own bytes: kept as pickle has them.
_DATA_OPCODES = (
    *(pickle.PROTO, pickle.FRAME, pickle.STOP, pickle.MARK, pickle.POP, pickle.POP_MARK, pickle.DUP),
    *(pickle.NONE, pickle.NEWTRUE, pickle.NEWFALSE, pickle.INT, pickle.BININT, pickle.BININT1, pickle.BININT2),
    *(pickle.LONG, pickle.LONG1, pickle.LONG4, pickle.FLOAT, pickle.BINFLOAT),
    *(pickle.STRING, pickle.BINSTRING, pickle.SHORT_BINSTRING, pickle.BINBYTES, pickle.SHORT_BINBYTES),
    *(pickle.BINBYTES8, pickle.UNICODE, pickle.BINUNICODE, pickle.SHORT_BINUNICODE, pickle.BINUNICODE8),
    *(pickle.EMPTY_TUPLE, pickle.TUPLE, pickle.TUPLE1, pickle.TUPLE2, pickle.TUPLE3),
    *(pickle.EMPTY_LIST, pickle.LIST, pickle.EMPTY_DICT, pickle.DICT, pickle.EMPTY_SET, pickle.FROZENSET),
    *(pickle.GET, pickle.BINGET, pickle.LONG_BINGET, pickle.PUT, pickle.BINPUT, pickle.LONG_BINPUT, pickle.MEMOIZE),
)


class RestrictedUnpickler(pickle._Unpickler):  # type: ignore[name-defined]
    """The pure-Python unpickler with every opcode that calls, imports or mutates checked.

    Refused outright: INST and OBJ (protocol 0/1 instantiation), EXT1/2/4 (the copyreg
    extension registry), PERSID (text persistent ids), NEXT_BUFFER and READONLY_BUFFER.
    """

    dispatch = _Dispatch({opcode[0]: pickle._Unpickler.dispatch[opcode[0]] for opcode in _DATA_OPCODES})

    def __init__(
        self,
        data: bytes,
        *,
        policy: GlobalPolicy,
        import_module: Callable[[str], ModuleType],
        persistent_load: Callable[[Any], Any],
        archive: str,
        record: str,
    ) -> None:
        super().__init__(io.BytesIO(data))
        self._policy = policy
        self._import_module = import_module
        self._persistent_load = persistent_load
        self._where = f"{archive}: {record}"
        self._archive = archive
        self._record = record
        self._pickle_size = len(data)
        self._budget = self._budget_total = ALLOCATION_ALLOWANCE + ALLOCATION_PER_PICKLE_BYTE * len(data)
        # id -> object, for what allowed_globals or trusted modules gave: callable, buildable.
        self._allowed_objects: dict[int, Any] = {}

    def load(self) -> Any:
        try:
            with collector_paused():  # as the ordinary unpickler: no collections over the growing heap
                return super().load()
        except _RefusedOpcode as refused:
            raise self._refuse(f"uses the pickle opcode {refused.args[0]!r}") from None
        except (TorchpackError, RecursionError):
            raise
        except (*DATA_ERRORS, struct.error) as error:
            raise PickleDataError(f"{type(error).__name__}: {error}") from error

    def _refuse(self, what: str) -> RestrictedLoadError:
        return RestrictedLoadError(f"{self._where} {what}, which restricted loading does not allow")

    # -- globals ----------------------------------------------------------------------------

    def find_class(self, module: str, name: str) -> Any:
        if type(module) is not str or type(name) is not str:
            raise PickleDataError("a global's module and name must be strings")
        module = demangle(module)
        found = DEFAULT_GLOBALS.get((module, name))
        if found is not None:
            return checked_rebuild(found)
        if self._policy.packaged_untrusted(module):
            raise RestrictedLoadError(untrusted_code_message(self._archive, module, f"{self._record} needs"))
        if not self._policy.names_allowed(module, name):
            raise RestrictedLoadError(
                f"{self._where} references the global {module}.{name}, which restricted loading does not "
                f"allow (if it is trusted, add '{module}:{name}' to allowed_globals)"
            )
        found = self._resolve(module, name)
        handed_out = checked_rebuild(found)
        # Both: BUILD and items check an instance's class, calls the object handed out.
        self._allowed_objects[id(found)] = found
        self._allowed_objects[id(handed_out)] = handed_out
        return handed_out

    def _resolve(self, module: str, qualname: str) -> Any:
        found: Any = self._import_module(module)
        parts = qualname.split(".")
        for depth, part in enumerate(parts):
            if depth and not isinstance(found, type):
                # Only a class may hold a nested name: stepping through a module (or any
                # other object) would reach whatever that module imported.
                raise self._refuse(f"names {module}.{qualname}, which steps through {'.'.join(parts[:depth])}")
            try:
                found = getattr(found, part)
            except AttributeError:
                raise PickleDataError(f"{module} has no attribute {qualname}") from None
        if isinstance(found, ModuleType):
            raise self._refuse(f"names the module {module}.{qualname} as a global")
        if isinstance(found, _NAMED_TYPES):
            # The object must be allowed under its own name too: `lab.util.system` that is
            # really `posix.system` imported into lab.util is not what the allow-list meant.
            own_module, own_qualname = getattr(found, "__module__", None), getattr(found, "__qualname__", None)
            if isinstance(own_module, str) and isinstance(own_qualname, str):
                own_module = demangle(own_module)
                if (own_module, own_qualname) != (module, qualname) and not (
                    DEFAULT_GLOBALS.get((own_module, own_qualname)) is found
                    or self._policy.names_allowed(own_module, own_qualname)
                ):
                    raise self._refuse(f"names {module}.{qualname}, which is {own_module}.{own_qualname}")
        return found

    def load_global(self) -> None:
        module = self.readline()[:-1].decode("utf-8")
        name = self.readline()[:-1].decode("utf-8")
        self.append(self.find_class(module, name))

    def load_stack_global(self) -> None:
        name = self.stack.pop()
        module = self.stack.pop()
        self.append(self.find_class(module, name))

    # -- calls ------------------------------------------------------------------------------

    def _charge(self, function: Any, args: Any) -> bool:
        """Check a call of ``function(*args)``: True for a default callable (whose cost is charged)."""
        if type(args) is not tuple:
            raise PickleDataError(f"the arguments of a call are a {type(args).__name__}, not a tuple")
        cost = _CALL_COSTS.get(id(function))
        if cost is None:
            if id(function) not in self._allowed_objects or not callable(function):
                raise self._refuse(f"calls {function!r:.80}")
            return False
        if function is _REBUILD_FROM_TYPE:
            self._check_rebuild_from_type(args)
        elif function is collections.defaultdict and args and args[0] is not None:
            # The factory runs later, whenever a missing key is read: an allowed callable only.
            if id(args[0]) not in _CALL_COSTS and id(args[0]) not in self._allowed_objects:
                raise self._refuse(f"makes a defaultdict calling {args[0]!r:.80}")
        try:
            nbytes = cost(args)
        except RestrictedLoadError as error:
            raise RestrictedLoadError(f"{self._where}: {error}") from None
        self._budget -= nbytes
        if self._budget < 0:
            raise RestrictedLoadError(
                f"{self._where}: {getattr(function, '__name__', function)}(...) would allocate about {nbytes} bytes, "
                f"more than restricted loading allows for a pickle of {self._pickle_size} bytes "
                f"({self._budget_total} bytes in all)"
            )
        return True

    def _check_rebuild_from_type(self, args: tuple[Any, ...]) -> None:
        # torch calls args[0](*args[2]) and makes the result an instance of args[1]: both
        # must be what tensors pickle as, or what the caller allowed.
        if len(args) != 4 or id(args[0]) not in _TENSOR_REBUILDS:
            raise self._refuse("calls _rebuild_from_type_v2 with a function that is no tensor rebuild")
        new_type = args[1]
        if new_type not in (torch.Tensor, torch.nn.Parameter) and id(new_type) not in self._allowed_objects:
            raise self._refuse(f"makes a tensor of the type {new_type!r:.80}")
        try:
            _check_tensor_state(args[3])
        except RestrictedLoadError as error:
            raise RestrictedLoadError(f"{self._where}: {error}") from None

    def load_reduce(self) -> None:
        args = self.stack.pop()
        function = self.stack[-1]
        self._charge(function, args)
        self.stack[-1] = function(*args)

    def load_newobj(self) -> None:
        args = self.stack.pop()
        cls = self.stack.pop()
        self._new(cls, args, {})

    def load_newobj_ex(self) -> None:
        kwargs = self.stack.pop()
        args = self.stack.pop()
        cls = self.stack.pop()
        if type(kwargs) is not dict:
            raise PickleDataError("NEWOBJ_EX keywords are not a dict")
        self._new(cls, args, kwargs)

    def _new(self, cls: Any, args: Any, kwargs: dict[str, Any]) -> None:
        if not isinstance(cls, type):
            raise self._refuse(f"makes an instance of {cls!r:.80}, which is no class")
        if self._charge(cls, args) and kwargs:
            raise self._refuse(f"makes a {cls.__name__} with keywords")
        self.append(cls.__new__(cls, *args, **kwargs))

    def load_build(self) -> None:
        state = self.stack[-1]
        instance = self.stack[-2]
        if type(instance) is collections.OrderedDict:
            # A state dict's `_metadata`: plain attributes, nothing that runs.
            if type(state) is not dict or not all(type(key) is str and not key.startswith("__") for key in state):
                raise self._refuse("sets odd state on an OrderedDict")
            self.stack.pop()
            instance.__dict__.update(state)
        elif id(type(instance)) in self._allowed_objects:
            super().load_build()
        else:
            raise self._refuse(f"sets the state of a {type(instance).__name__}")

    def load_bytearray8(self) -> None:
        # pickle allocates the declared length before reading: the length must be there.
        (length,) = struct.unpack("<Q", self.read(8))
        if length > self._pickle_size:
            raise PickleDataError(f"a bytearray of {length} bytes in a pickle of {self._pickle_size}")
        self.append(bytearray(self.read(length)))

    # -- items ------------------------------------------------------------------------------

    def _target(self, allowed: tuple[type, ...], what: str) -> Any:
        target = self.stack[-1]
        if type(target) not in allowed and id(type(target)) not in self._allowed_objects:
            raise self._refuse(f"adds {what} to a {type(target).__name__}")
        return target

    def load_append(self) -> None:
        item = self.stack.pop()
        target = self._target(_LIST_TYPES, "items")
        target.append(item)

    def load_appends(self) -> None:
        items = self.pop_mark()
        target = self._target(_LIST_TYPES, "items")
        target.extend(items)

    def load_setitem(self) -> None:
        value = self.stack.pop()
        key = self.stack.pop()
        self._target((*_DICT_TYPES, collections.defaultdict), "entries")[key] = value

    def load_setitems(self) -> None:
        items = self.pop_mark()
        target = self._target((*_DICT_TYPES, collections.defaultdict), "entries")
        for index in range(0, len(items), 2):
            target[items[index]] = items[index + 1]

    def load_additems(self) -> None:
        items = self.pop_mark()
        self._target((set,), "elements").update(items)

    # -- persistent ids ---------------------------------------------------------------------

    def load_binpersid(self) -> None:
        saved_id = self.stack.pop()
        if type(saved_id) is tuple and len(saved_id) in (3, 4) and saved_id[0] in ("reduce_package", b"reduce_package"):
            # The saved function is called with the importer: only one the caller allowed.
            if id(saved_id[-2]) not in self._allowed_objects:
                raise self._refuse(f"calls {saved_id[-2]!r:.80} through a persistent id")
        self.append(self._persistent_load(saved_id))

    dispatch[pickle.GLOBAL[0]] = load_global
    dispatch[pickle.STACK_GLOBAL[0]] = load_stack_global
    dispatch[pickle.REDUCE[0]] = load_reduce
    dispatch[pickle.NEWOBJ[0]] = load_newobj
    dispatch[pickle.NEWOBJ_EX[0]] = load_newobj_ex
    dispatch[pickle.BUILD[0]] = load_build
    dispatch[pickle.APPEND[0]] = load_append
    dispatch[pickle.APPENDS[0]] = load_appends
    dispatch[pickle.SETITEM[0]] = load_setitem
    dispatch[pickle.SETITEMS[0]] = load_setitems
    dispatch[pickle.ADDITEMS[0]] = load_additems
    dispatch[pickle.BINPERSID[0]] = load_binpersid
    dispatch[pickle.BYTEARRAY8[0]] = load_bytearray8
