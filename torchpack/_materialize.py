"""The materialized view: an archive's sources and resources as real files, for code that
walks its own folders.

Packaged modules normally have no file-system presence: ``__file__`` and ``__path__`` name
folders inside the archive (``<torch_package_0>.transformers/...``), which is enough for
imports, tracebacks and ``importlib.resources``. Libraries that ``os.listdir`` their own
package folder (transformers lists ``transformers/models`` at import) or open a data file
next to ``__file__`` need real paths. ``PackageImporter(..., materialize=...)`` gives them
one: the chosen records are extracted once into torchpack's cache, in a folder named by the
digest of what it holds, and those modules' ``__file__`` and ``__path__`` point there, as pex
unpacks a zipapp. The modules are still imported through the PackageImporter (mangled names,
isolation from the environment): only where they appear to live changes.

Safety of a folder other processes can write to:

* Extraction writes into a temporary sibling folder and renames it into place, so a view is
  complete or absent; when two processes race, the second rename fails and its copy is
  dropped in favour of the first.
* Every use checks the folder against the manifest it was built from (the archive's own
  integrity digests when it has them): the set of files, and each file's size and digest. A
  folder that does not match is moved aside and extracted again, with a warning; a file that
  was changed after extraction is never what the package sees.
"""

from __future__ import annotations

import atexit
import functools
import importlib.machinery
import importlib.util
import json
import os
import shutil
import sys
import tempfile
import uuid
import warnings
from collections.abc import Callable, Iterable
from pathlib import Path
from types import ModuleType
from typing import Any, Union

from . import _digest as digest_module
from . import _disk_cache as disk_cache
from ._archive_reader import ArchiveReader
from ._distributions import add_metadata_facade, saved_distributions
from ._globbing import compile_glob
from ._integrity import CheckedReader, IntegrityRecord
from .errors import MaterializedViewError, MaterializedViewWarning

#: ``True`` (every record outside ``.data/``), or globs of module names whose files to extract.
MaterializeSpec = Union[bool, str, Iterable[str]]

#: The cache folder holding views, one sub-folder per view digest.
VIEWS = "materialized"
#: Written last into a view: what it must hold. Never a record name (those have no leading dot
#: at the top level other than ``.data``).
MANIFEST = ".torchpack-view.json"

_scratch_views: str | None = None


def _wanted_records(names: Iterable[str], spec: MaterializeSpec) -> list[str]:
    """The record names the view holds: sources and resources, never ``.data/``."""
    candidates = [name for name in names if not name.startswith(".data/") and not name.endswith("/")]
    if spec is True:
        return sorted(candidates)
    patterns = [compile_glob(pattern) for pattern in ([spec] if isinstance(spec, str) else spec)]

    def matches(dotted: str) -> bool:
        return any(pattern.fullmatch("." + dotted) for pattern in patterns)

    wanted = []
    for name in candidates:
        folder, _, leaf = name.rpartition("/")
        package = folder.replace("/", ".")
        module = f"{package}.{leaf[:-3]}" if package else leaf[:-3]
        if (package and matches(package)) or (leaf.endswith(".py") and matches(module)):
            wanted.append(name)
    return sorted(wanted)


def _manifest(
    reader: ArchiveReader | CheckedReader, integrity: IntegrityRecord | None, names: list[str]
) -> tuple[str, dict[str, list]]:
    """(algorithm, record -> [size, digest]); from the integrity record where it lists the
    record, so that a view already on disk is found without reading the archive."""
    algorithm = integrity.algorithm if integrity is not None else digest_module.WRITTEN
    hash_bytes = digest_module.HEX_DIGESTS[algorithm]
    listed = {}
    for name in names:
        expected = integrity.records.get(name) if integrity is not None else None
        if expected is not None:
            listed[name] = [expected.size, expected.digest]
        else:  # a torch.package archive (or a record it does not list): read (CRC-checked) and hashed here
            data = reader.read(name)
            listed[name] = [len(data), hash_bytes(data)]
    return algorithm, listed


def _views_folder() -> Path:
    global _scratch_views
    root = disk_cache.cache_root()
    if root is not None:
        return root / VIEWS
    # The cache is turned off: a folder of this process, removed when it exits.
    if _scratch_views is None:
        _scratch_views = tempfile.mkdtemp(prefix="torchpack-views-")
        atexit.register(shutil.rmtree, _scratch_views, True)
    return Path(_scratch_views)


def _problem(folder: Path, algorithm: str, listed: dict[str, list]) -> str | None:
    """Why ``folder`` is not exactly the view ``listed`` describes, or None when it is."""
    try:
        recorded = json.loads((folder / MANIFEST).read_text("utf-8"))
    except (OSError, ValueError) as error:
        return f"its manifest cannot be read ({error})"
    if recorded != {"algorithm": algorithm, "records": listed}:
        return "its manifest describes other files"
    hash_bytes = digest_module.HEX_DIGESTS[algorithm]
    present = set()
    for directory, _, files in os.walk(folder):
        for file in files:
            present.add(os.path.relpath(os.path.join(directory, file), folder).replace(os.sep, "/"))
    present.discard(MANIFEST)
    if present != listed.keys():
        extra = sorted(present - listed.keys())
        return f"it holds files the archive does not: {extra[:3]}" if extra else "files are missing from it"
    for name, (size, expected) in listed.items():
        try:
            data = (folder / name).read_bytes()
        except OSError as error:
            return f"{name} cannot be read ({error})"
        if len(data) != size or hash_bytes(data) != expected:
            return f"{name} was changed after it was extracted"
    return None


def _extract(reader: ArchiveReader | CheckedReader, folder: Path, algorithm: str, listed: dict[str, list]) -> None:
    """Write the view into a temporary sibling of ``folder`` and rename it into place."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    temporary = Path(tempfile.mkdtemp(dir=folder.parent, prefix=".tmp-"))
    try:
        for name in listed:
            target = temporary / name
            target.parent.mkdir(parents=True, exist_ok=True)
            # Read through the (checked) reader: the bytes written are the digest-verified ones.
            target.write_bytes(reader.read(name))
            os.chmod(target, 0o444)
        (temporary / MANIFEST).write_text(json.dumps({"algorithm": algorithm, "records": listed}), "utf-8")
        os.chmod(temporary / MANIFEST, 0o444)
        try:
            os.rename(temporary, folder)
        except OSError:
            if not folder.is_dir():
                raise
            # Another process renamed its identical copy into place first; use that one.
    finally:
        shutil.rmtree(temporary, ignore_errors=True)


def _discard(folder: Path) -> None:
    """Move a bad view out of the way first (one rename), so no process reads it half-removed."""
    aside = folder.with_name(f".bad-{folder.name}-{uuid.uuid4().hex}")
    try:
        os.rename(folder, aside)
    except OSError:
        return  # another process moved it already
    shutil.rmtree(aside, ignore_errors=True)


class MaterializedView:
    """One archive's extracted files, and which packaged modules live in them."""

    def __init__(self, root: Path, records: Iterable[str]) -> None:
        self.root = root
        self._files = frozenset(records)
        self._folders = frozenset(
            "/".join(parts[:depth]) for parts in (name.split("/") for name in self._files) for depth in range(1, len(parts))
        )

    def file_of(self, record: str | None) -> str | None:
        """The real path of a source record, when the view holds it."""
        return str(self.root / record) if record is not None and record in self._files else None

    def module_at(self, location: Any) -> str | None:
        """The packaged module whose file of the view ``location`` is, if it is one."""
        if location is None:
            return None
        try:
            relative = Path(os.fspath(location)).resolve().relative_to(self.root.resolve()).as_posix()
        except (TypeError, ValueError, OSError):
            return None
        if relative not in self._files or not relative.endswith(".py"):
            return None
        module = relative[: -len(".py")]
        if module.endswith("/__init__"):
            module = module[: -len("/__init__")]
        return module.replace("/", ".")

    def folder_of(self, package: str) -> str | None:
        """The real folder of a package (dotted name), when the view holds files below it."""
        relative = package.replace(".", "/")
        return str(self.root / relative) if relative in self._folders else None


def materialize(
    reader: ArchiveReader | CheckedReader,
    integrity: IntegrityRecord | None,
    spec: MaterializeSpec,
    archive: str,
) -> MaterializedView:
    """The verified view of ``reader``'s records chosen by ``spec``, extracted if need be."""
    names = _wanted_records(reader.names(), spec)
    algorithm, listed = _manifest(reader, integrity, names)
    key_material = json.dumps({"algorithm": algorithm, "records": listed}, sort_keys=True).encode("utf-8")
    folder = _views_folder() / digest_module.hex_digest(key_material)
    if folder.is_dir():
        problem = _problem(folder, algorithm, listed)
        if problem is None:
            return MaterializedView(folder, names)
        warnings.warn(
            f"{archive}: the materialized view {folder} was not used because {problem}; extracting it again",
            MaterializedViewWarning,
            stacklevel=3,
        )
        _discard(folder)
    _extract(reader, folder, algorithm, listed)
    # Checked again after the rename: the folder in place may be another process's copy.
    problem = _problem(folder, algorithm, listed)
    if problem is not None:
        raise MaterializedViewError(f"{archive}: the materialized view {folder} cannot be used: {problem}")
    return MaterializedView(folder, names)


class _ViewModuleLoader:
    """Loads a file of the view by path as the packaged module it is, not as a second copy."""

    def __init__(self, import_module: Callable[[str], ModuleType], packaged_name: str) -> None:
        self._import_module = import_module
        self._packaged_name = packaged_name

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> None:
        return None

    def exec_module(self, module: ModuleType) -> None:
        packaged = self._import_module(self._packaged_name)
        name = module.__spec__.name
        present = sys.modules.setdefault(name, packaged)
        if present is not packaged:
            raise ImportError(
                f"packaged code imported its own file {module.__spec__.origin} as {name!r}, "
                f"but {name!r} is already another module in this process",
                name=name,
            )


def add_view_facade(
    facades: dict[str, ModuleType], view: MaterializedView, import_module: Callable[[str], ModuleType]
) -> None:
    """Give packaged code an ``importlib.util`` whose ``spec_from_file_location`` maps files of
    the view back to their packaged modules.

    Libraries import themselves by path (transformers runs ``spec_from_file_location(
    "transformers", <its __init__.py>)`` and then reads ``sys.modules["transformers"]``).
    Through the environment's import system that would run a second, unpackaged copy, which
    fails where the library is not installed and mixes in the installed copy where it is. The
    facade's loader imports the packaged module instead and, as that code expects, publishes
    it in ``sys.modules`` under the name asked for, when no other module holds that name.
    """
    real_util = importlib.util
    util = ModuleType(real_util.__name__, real_util.__doc__)
    util.__getattr__ = functools.partial(getattr, real_util)  # type: ignore[attr-defined]
    util.__spec__ = real_util.__spec__

    @functools.wraps(real_util.spec_from_file_location)
    def spec_from_file_location(name: str, location: Any = None, **kwargs: Any) -> Any:
        packaged_name = view.module_at(location)
        if packaged_name is None:
            return real_util.spec_from_file_location(name, location, **kwargs)
        spec = importlib.machinery.ModuleSpec(name, _ViewModuleLoader(import_module, packaged_name), origin=os.fspath(location))
        spec.has_location = True
        return spec

    util.spec_from_file_location = spec_from_file_location  # type: ignore[attr-defined]
    facades["importlib.util"] = util
    facades["importlib"].util = util  # type: ignore[attr-defined]


def more_facades(
    view: MaterializedView | None,
    record_names: Iterable[str],
    import_module: Callable[[str], ModuleType],
    load_text: Callable[[str, str], str],
) -> dict[str, Callable[[dict[str, ModuleType]], None]]:
    """The importlib modules packaged code gets a facade of besides the usual ones (see
    torchpack._importlib_facade), each with what adds it to the facades: ``importlib.util`` in
    a materialized view, ``importlib.metadata`` when the archive saved distribution metadata."""
    facades: dict[str, Callable[[dict[str, ModuleType]], None]] = {}
    if view is not None:
        facades["importlib.util"] = functools.partial(add_view_facade, view=view, import_module=import_module)
    distributions = saved_distributions(record_names)
    if distributions:
        facades["importlib.metadata"] = functools.partial(add_metadata_facade, saved=distributions, load_text=load_text)
    return facades
