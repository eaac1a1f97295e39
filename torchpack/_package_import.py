"""PackageImporter: an isolated import system over the contents of one archive.

This half opens the archive (integrity, signatures, extern and module indexes), serves its
resources and unpickles its objects; the import system itself, after CPython's
``importlib._bootstrap``, is :mod:`torchpack._import_system`. Each module is registered
under its *mangled* name in ``sys.modules`` too - never under its real name - so that tools
which look a class's module up there (pickle, inspect, dataclasses, typing) work on
packaged code without any monkeypatching.
"""

from __future__ import annotations

import builtins
import functools
import os
import pickle
import threading
from collections.abc import Callable, Iterable
from typing import Any, Literal

import torch
from torch._utils import _validate_loaded_sparse_tensors as validate_loaded_sparse_tensors

from . import _records as records
from ._archive_reader import ArchiveReader, ArchiveSource, MmapMode, open_archive
from ._gc import collector_paused
from ._integrity import CheckedReader, check_missing_integrity, extern_version_mismatches, parse_integrity, read_integrity
from ._import_system import ModuleEntry, PackageImportSystem, ancestors
from ._mangling import PackageMangler
from ._materialize import MaterializedView, MaterializeSpec, materialize as materialize_view, more_facades
from ._pickling import PackageUnpickler
from ._resources import ArchiveFiles, PackageResourceReader
from ._stdlib import is_stdlib_module
from ._storage import (
    DATA_ERRORS,
    MapLocation,
    restore_location,
    storage_class_dtype,
    storage_from_record,
    typed_storage,
)
from ._torchscript import (
    StorageContext,
    call_package_reducer,
    has_torchscript,
    new_storage_context,
    open_torch_reader,
    share_storage,
    shared_storage,
)
from ._restricted import GlobalPolicy, RestrictedUnpickler
from ._signing import PublicKeySource, check_signature, signature_path
from ._user_warnings import warn_once
from .errors import (
    ArchiveFormatError,
    ExternVersionError,
    ExternVersionWarning,
    PickleDataError,
    RecordNotFoundError,
    TorchpackError,
)
from .file_structure_representation import Directory, directory_from_records
from ._resolution import module_exists
from .importer import PACKAGE_IMPORTER_MODULE, Importer, sys_importer


#: When records are checked against the integrity record: each as it is first used ("on-use"),
#: every record when the importer opens ("eager"), or as "on-use" except the tensor records that
#: are memory-mapped, whose pages are then only read when the tensor is ("trust-mapped": for
#: archives verified before, it keeps loading a multi-GiB model as cheap as a small one).
IntegrityMode = Literal["on-use", "eager", "trust-mapped"]


class PackageImporter(PackageImportSystem, Importer):
    """Imports modules and loads objects from a package, isolated from the environment.

    ``file_or_buffer`` is a path, a binary stream, bytes, or an unzipped archive folder.
    ``module_allowed`` can veto extern modules. Tensors of a file archive are built on a
    memory mapping of it when their records are stored and aligned (torchpack's always are;
    torch.package's mostly not, and those are copied). ``mmap`` says how the file is mapped:
    ``True`` or ``"copy-on-write"`` (the default): tensors are writable, and writes stay
    private to the process, never reaching the archive. ``"read-only"``: pages can only be
    read - writing to such a tensor in place kills the process with a segmentation fault
    (torch has no read-only tensors to refuse it) - for processes that never modify what
    they load, as the mapping then costs no commit charge. ``False``: read the file and copy
    every tensor.

    Archives with an integrity record have each record checked against its SHA-256 when it
    is first used (``integrity="on-use"``), or all of them on opening (``"eager"``);
    ``"trust-mapped"`` skips hashing the tensors mapped from the file, for archives checked
    before (``torchpack verify``), so that loading a large model only maps it. An archive
    torchpack wrote whose integrity record was removed gives an
    :class:`IntegrityDowngradeWarning`; ``require_integrity=True`` refuses every archive
    without one (torch.package's included) with an :class:`IntegrityError`.
    ``restricted=True`` is for archives that are not trusted (see :mod:`torchpack._restricted`):
    pickles get only :data:`torchpack._restricted.DEFAULT_GLOBALS` and what ``allowed_globals``
    allows (``"module:qualname"`` globs, or ``"torch.nn.modules.**"``-style globs over
    top-level names), and no packaged module runs unless ``trusted_modules`` (globs such as
    ``"mylab.**"``) names it, which also allows its globals. An extern distribution installed
    at another version than the recorded one gives an :class:`ExternVersionWarning`, or with
    ``strict_versions=True`` an :class:`ExternVersionError`. ``materialize`` (``True``, or
    globs such as ``"transformers.**"``) extracts those modules' files into torchpack's cache
    and points their ``__file__`` and ``__path__`` there, for libraries that list or open
    their own files (see :mod:`torchpack._materialize`).

    ``trusted_keys`` (Ed25519 public keys: key objects, key file contents as bytes, or key
    file paths) makes the archive load only if one of them signed it (``torchpack sign``):
    the signature (``signature``, or by default the ``ARCHIVE.sig`` file next to a file
    archive) is checked before any record but the integrity record is read, and every
    other record must then be listed in the integrity record and match its digest. An
    unsigned or wrongly signed archive gets a :class:`SignatureError`.
    """

    modules: dict[str, Any]

    # Opening indexes every record (directory entries, digests, module names): tens of
    # thousands of objects for an archive of many tensors, which the collector would chase.
    @collector_paused()
    def __init__(
        self,
        file_or_buffer: ArchiveSource,
        module_allowed: Callable[[str], bool] = lambda name: True,
        *,
        mmap: MmapMode = True,
        integrity: IntegrityMode = "on-use",
        restricted: bool = False,
        allowed_globals: Iterable[str] = (),
        trusted_modules: Iterable[str] = (),
        strict_versions: bool = False,
        materialize: MaterializeSpec = False,
        trusted_keys: Iterable[PublicKeySource] | None = None,
        signature: bytes | None = None,
        require_integrity: bool = False,
    ) -> None:
        if integrity not in ("on-use", "eager", "trust-mapped"):
            raise ValueError(f"integrity must be 'on-use', 'eager' or 'trust-mapped', not {integrity!r}")
        trusted_modules = list(trusted_modules)
        if trusted_modules and not restricted:
            # Without restricted=True every packaged module runs anyway: saying which to trust
            # would read as a restriction that is not there.
            raise ValueError("trusted_modules only applies with restricted=True, where untrusted code never runs")
        reader = open_archive(file_or_buffer, use_mmap=mmap)
        is_path = isinstance(file_or_buffer, (str, os.PathLike))
        self.filename = os.fspath(file_or_buffer) if is_path else "<binary>"
        if trusted_keys is None:
            self.integrity_record = read_integrity(reader)
        else:
            # Nothing but the integrity record is read before the signature vouches for it;
            # CheckedReader below then refuses any record it does not list.
            sidecar = signature_path(file_or_buffer) if is_path else None
            signed_integrity, _ = check_signature(reader, trusted_keys, signature=signature, sidecar=sidecar)
            self.integrity_record = parse_integrity(signed_integrity, reader.name)
        if self.integrity_record is None:
            check_missing_integrity(reader, require=require_integrity)
            self.zip_reader: ArchiveReader | CheckedReader = reader
        else:
            self.zip_reader = CheckedReader(reader, self.integrity_record)
            if integrity == "eager":
                self.zip_reader.verify_all()
        self._trust_mapped = integrity == "trust-mapped"
        self._check_version()
        self._record_names = self.zip_reader.names()
        self.extern_modules = self._extern_module_names()
        for extern in self.extern_modules:
            if not module_allowed(extern):
                raise ImportError(
                    f"package '{self.filename}' needs the external module '{extern}' "
                    "but that module has been disallowed"
                )
        self._check_extern_versions(strict_versions)
        self._extern_set = frozenset(self.extern_modules)
        self._index = self._index_modules()
        self._view: MaterializedView | None = None
        if materialize is not False:
            self._view = materialize_view(self.zip_reader, self.integrity_record, materialize, self.filename)
        self._more_facades = more_facades(self._view, self._record_names, self.import_module, self.load_text)
        self._extern_parents = self._place_extern_parents()
        self._global_policy = GlobalPolicy(self._owns, allowed_globals, trusted_modules) if restricted else None
        self._mangler = PackageMangler()
        self.modules = {PACKAGE_IMPORTER_MODULE: self}
        # Packaged code imports through this importer: its modules get these builtins.
        self._builtins = dict(builtins.__dict__)
        self._builtins["__import__"] = self.__import__
        # Per-thread, so concurrent load_pickle calls do not see each other's state.
        self._load_state = threading.local()
        self._lock = threading.RLock()
        # Storages by record key, shared by every pickle of this archive (as in torch.package):
        # a tensor saved in two pickles is one storage after loading too.
        self._storages: dict[str, torch.UntypedStorage] = {}
        self._storages_lock = threading.Lock()

    # -- archive metadata -------------------------------------------------------------------

    def _check_version(self) -> None:
        reader = self.zip_reader
        name = records.VERSION if reader.has_record(records.VERSION) else "version"
        if not reader.has_record(name):
            raise ArchiveFormatError(f"{reader.name}: no .data/version record; not a torch.package archive")
        text = reader.read(name).decode("ascii", "replace").strip()
        if not text.isdigit() or int(text) not in records.SUPPORTED_FORMAT_VERSIONS:
            raise ArchiveFormatError(f"{reader.name}: unsupported package format version {text!r} in {name}")

    @functools.cached_property
    def _optional_missing(self) -> list[str]:
        """Modules the exporter left out as optional and not installed; read when first needed."""
        if not self.zip_reader.has_record(records.OPTIONAL_MISSING):
            return []
        return self.zip_reader.read(records.OPTIONAL_MISSING).decode("utf-8", "replace").splitlines()

    def _check_extern_versions(self, strict: bool) -> None:
        if self.integrity_record is None:
            return
        mismatches = extern_version_mismatches(self.integrity_record)
        if not mismatches:
            return
        if strict:
            message = f"{self.filename}: " + "; ".join(mismatch.describe() for mismatch in mismatches)
            raise ExternVersionError(message)
        # Once per archive and distribution, however many importers open the same archive.
        serialization_id = (
            self.zip_reader.read(records.SERIALIZATION_ID) if self.zip_reader.has_record(records.SERIALIZATION_ID) else b""
        )
        archive = (self.filename, serialization_id)
        for mismatch in mismatches:
            warn_once((archive, mismatch), f"{self.filename}: {mismatch.describe()}", ExternVersionWarning)

    def _extern_module_names(self) -> list[str]:
        if not self.zip_reader.has_record(records.EXTERN_MODULES):
            return []
        text = self.zip_reader.read(records.EXTERN_MODULES).decode("utf-8")
        return [line for line in text.splitlines() if line]

    def _index_modules(self) -> dict[str, ModuleEntry]:
        index: dict[str, ModuleEntry] = {}
        # A folder's packages are indexed with its first record: an archive of many
        # resources has few folders, and a record that is no source costs two tests.
        indexed_folders: set[str] = set()
        for name in self._record_names:
            if name.startswith(".data/"):
                continue
            folder, _, leaf = name.rpartition("/")
            if folder not in indexed_folders:
                indexed_folders.add(folder)
                folders = folder.split("/") if folder else []
                for depth in range(1, len(folders) + 1):
                    index.setdefault(".".join(folders[:depth]), ModuleEntry(None, True))
            if not leaf.endswith(".py"):
                continue
            package = folder.replace("/", ".")
            if leaf == "__init__.py" and folder:
                index[package] = ModuleEntry(name, True)
            else:
                index.setdefault(f"{package}.{leaf[:-3]}" if folder else leaf[:-3], ModuleEntry(name, False))
        return index

    def _place_extern_parents(self) -> frozenset[str]:
        """Decide where the parents of extern modules that the archive does not hold come from.

        Those of the standard library and torch come from the environment, which exporters
        take them from anyway (importing `importlib.resources` needs the real `importlib`);
        they are returned. Any other becomes an empty package of the archive, as in
        torch.package: with `extern("a.sub")` alone, importing `a` gives the package's own
        `a`, with the extern `a.sub` bound on it (see _find_and_load).
        """
        environment_parents = set()
        for extern in self.extern_modules:
            for parent in ancestors(extern):
                if parent in self._index or any(a in self._extern_set for a in (*ancestors(parent), parent)):
                    continue
                top = parent.partition(".")[0]
                if top == "torch" or is_stdlib_module(top):
                    environment_parents.add(parent)
                else:
                    self._index[parent] = ModuleEntry(None, True)
        return frozenset(environment_parents)

    def python_version(self) -> str | None:
        """The Python version the package was exported with, when it recorded one."""
        if not self.zip_reader.has_record(records.PYTHON_VERSION):
            return None
        return self.zip_reader.read(records.PYTHON_VERSION).decode("utf-8").strip()

    def id(self) -> str:
        """This importer's mangle prefix, e.g. ``<torch_package_0>``."""
        return self._mangler.parent_name()

    def file_structure(self, *, include: Any = "**", exclude: Any = ()) -> Directory:
        """A printable tree of the package's records, filtered by ``/``-separated globs."""
        return directory_from_records(self.filename, self._record_names, include, exclude)

    def has_module(self, name: str) -> bool:
        """Whether importing ``name`` through this importer can succeed, without importing it."""
        if name in self._index or name in self._extern_set or name in self._extern_parents:
            return True
        # Below an extern module the environment decides (`pathlib.Path` is no module).
        return self._is_extern(name) and module_exists(sys_importer, name)

    def _owns(self, name: str) -> bool:
        """Whether ``name`` loads from the archive (not from the environment as an extern)."""
        return name in self._index and not self._is_extern(name)

    def _is_extern(self, name: str) -> bool:
        """Whether ``name`` comes from the environment rather than from the archive.

        The nearest of ``name`` and its ancestors that the archive either holds source for or
        lists as extern decides, so a module whose source is in the archive always runs from
        the archive: an interned ``t.models.gpt2`` under an extern ``t`` must never quietly
        become the installed ``t.models.gpt2``. Folders without an ``__init__.py`` decide
        nothing. Parents of extern modules that the archive does not mention come from
        :meth:`_place_extern_parents`.
        """
        candidate = name
        while candidate:
            entry = self._index.get(candidate)
            if entry is not None and entry.filename is not None:
                return False
            if candidate in self._extern_set:
                return True
            candidate = candidate.rpartition(".")[0]
        return name in self._extern_parents

    # -- resources --------------------------------------------------------------------------

    def load_binary(self, package: str, resource: str) -> bytes:
        """The bytes saved with ``save_binary(package, resource, ...)``."""
        return self.zip_reader.read(self._resource_path(package, resource))

    def load_text(self, package: str, resource: str, encoding: str = "utf-8", errors: str = "strict") -> str:
        """The text saved with ``save_text(package, resource, ...)``."""
        return self.load_binary(package, resource).decode(encoding, errors)

    def _resource_path(self, package: str, resource: str) -> str:
        package = self._mangler.demangle(package)
        return f"{package.replace('.', '/')}/{resource}"

    def get_resource_reader(self, fullname: str) -> PackageResourceReader | None:
        """``importlib.resources`` support: a reader for the package ``fullname``."""
        entry = self._index.get(self._mangler.demangle(fullname))
        if entry is None or not entry.is_package:
            return None
        return PackageResourceReader(self._files, self._mangler.demangle(fullname).replace(".", "/"))

    def get_source(self, module_name: str) -> str:
        """Source of a packaged module (the loader protocol; used by linecache and inspect)."""
        name = self._mangler.demangle(module_name)
        entry = self._index.get(name)
        if entry is None:
            raise ImportError(f"no module named {name!r} in the package", name=name)
        return "" if entry.filename is None else self.zip_reader.read(entry.filename).decode("utf-8")

    # -- pickles ----------------------------------------------------------------------------

    @property
    def last_map_location(self) -> MapLocation:
        return getattr(self._load_state, "map_location", None)

    @property
    def storage_context(self) -> StorageContext:
        """The current load's storage context, shared with torch's TorchScript loader."""
        return getattr(self._load_state, "storage_context", None)

    @functools.cached_property
    def torch_file_reader(self) -> torch._C.PyTorchFileReader:
        """torch's own reader over this archive, which its TorchScript loader needs; made on first use."""
        return open_torch_reader(self.zip_reader, check_storages=not self._trust_mapped)

    @functools.cached_property
    def _files(self) -> ArchiveFiles:
        """The records by folder, for importlib.resources; built on first use, as most loads never ask."""
        return ArchiveFiles(self._record_names, self.zip_reader.read)

    @functools.cached_property
    def _has_torchscript(self) -> bool:
        return has_torchscript(self._record_names)

    def load_pickle(self, package: str, resource: str, map_location: MapLocation = None) -> Any:
        """Unpickle ``package/resource``, importing the classes it needs from the package."""
        pickle_name = self._resource_path(package, resource)
        located_storages: dict[str, Any] = {}
        loaded_reduces: dict[Any, Any] = {}
        # This load's; read here once rather than from the thread-local state per tensor.
        storage_context = new_storage_context(self._has_torchscript)
        dtypes: dict[Any, torch.dtype] = {}  # storage class -> dtype, for this load

        def persistent_load(saved_id: Any) -> Any:
            # One function rather than a checked wrapper around the loader: it runs per tensor.
            try:
                if type(saved_id) is not tuple or not saved_id:
                    raise PickleDataError(f"the persistent id {saved_id!r:.100} is not a tuple")
                kind = saved_id[0].decode("ascii") if isinstance(saved_id[0], bytes) else saved_id[0]
                if kind == "storage":
                    if len(saved_id) != 5:
                        raise PickleDataError(f"the storage persistent id {saved_id!r:.100} has not 5 fields")
                    storage_class, key, location, _count = saved_id[1:]
                    key = key.decode("ascii") if isinstance(key, bytes) else key
                    if type(key) is int:  # keys are strings; some writers' are numbers
                        key = str(key)
                    if type(key) is not str or type(location) is not str:
                        raise PickleDataError(f"the storage persistent id {saved_id!r:.100} has an odd key or location")
                    storage = located_storages.get(key)
                    if storage is None:
                        if storage_context is not None:  # an archive with TorchScript
                            storage = shared_storage(storage_context, key)  # a script module's, this load
                        if storage is None:
                            storage = restore_location(self._storage_for_key(pickle_name, key), location, map_location)
                            if storage_context is not None:
                                share_storage(storage_context, key, storage)
                        located_storages[key] = storage
                    dtype = dtypes.get(storage_class) if isinstance(storage_class, type) else None
                    if dtype is None:
                        dtype = dtypes[storage_class] = storage_class_dtype(storage_class)
                    return typed_storage(storage, dtype)
                if kind == "reduce_package":
                    if len(saved_id) not in (3, 4):
                        raise PickleDataError(f"the persistent id {saved_id!r:.100} has not 3 or 4 fields")
                    if len(saved_id) == 3:  # archives from before reduce ids existed
                        _, func, args = saved_id
                        return call_package_reducer(self, func, args)
                    _, reduce_id, func, args = saved_id
                    if reduce_id not in loaded_reduces:
                        loaded_reduces[reduce_id] = call_package_reducer(self, func, args)
                    return loaded_reduces[reduce_id]
                raise PickleDataError(f"unknown persistent id kind {kind!r:.60}")
            except (TorchpackError, RecursionError):
                raise
            except DATA_ERRORS as error:
                # Raised by torch on an odd id (or by map_location on its storage): the
                # archive's data is at fault; the cause is kept, so a torchpack fault shows.
                raise PickleDataError(f"persistent id {saved_id!r:.100}: {error}") from error

        data = self.zip_reader.read(pickle_name)
        unpickler: Any
        if self._global_policy is None:
            unpickler = PackageUnpickler(data, self, persistent_load)
        else:
            unpickler = RestrictedUnpickler(
                data,
                policy=self._global_policy,
                import_module=self.import_module,
                persistent_load=persistent_load,
                archive=self.filename,
                record=pickle_name,
            )
        self._load_state.map_location = map_location
        self._load_state.storage_context = storage_context
        try:
            result = unpickler.load()
        except (pickle.UnpicklingError, EOFError) as error:
            # The bytes passed their checks but are no pickle: a damaged or hand-made archive.
            raise ArchiveFormatError(f"{self.zip_reader.name}: {pickle_name} is not a valid pickle: {error}") from None
        except PickleDataError as error:
            raise PickleDataError(f"{self.zip_reader.name}: {pickle_name}: {error}") from error.__cause__
        finally:
            self._load_state.map_location = None
            self._load_state.storage_context = None
        validate_loaded_sparse_tensors()
        return result

    def _storage_for_key(self, pickle_name: str, key: str) -> torch.UntypedStorage:
        """The storage saved under ``key``, loaded once per importer whichever thread asks first."""
        with self._storages_lock:
            storage = self._storages.get(key)
            if storage is None:
                storage = self._storages[key] = self._load_storage(pickle_name, key)
            return storage

    def _load_storage(self, pickle_name: str, key: str) -> torch.UntypedStorage:
        record = records.storage_record(key)
        try:
            view, shareable = self.zip_reader.stored(record)
        except RecordNotFoundError:
            raise ArchiveFormatError(
                f"{self.zip_reader.name}: {pickle_name} references storage {key!r} but {record} is missing"
            ) from None
        # Checking (the digest, or the CRC-32 of a torch.package archive) reads every page of
        # a mapped tensor now; "trust-mapped" leaves them unread until the tensor is used.
        if not (shareable and self._trust_mapped):
            self.zip_reader.check(record, view)
        return storage_from_record(view, share=shareable)
