"""Package resources: BUILD.toml's ``data`` shorthand, and the resources of dependencies.

``data = ["text/*.txt"]`` next to ``mylab/BUILD.toml`` saves ``mylab/text/vocab.txt`` as the
binary record ``mylab/text/vocab.txt``, where ``importlib.resources.files("mylab.text")``
looks for it, instead of writing ``binary = { "mylab/text/vocab.txt" = "text/vocab.txt" }``.

Both front ends name the records here: the CLI from the files its globs match
(:func:`expand_data`), Bazel's ``torch_package`` from the files the macro's ``glob`` matched,
in its action (:func:`data_records`).  Bazel's ``glob`` does not enter a sub-package (a
folder with its own BUILD file), so the CLI refuses a file there instead of packaging
what Bazel would silently leave out.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .workspace import BUILD_FILE

if TYPE_CHECKING:
    from .labels import Label
    from .targets import Target


class DataGlobError(ValueError):
    """Glob number ``index`` of a ``data`` key is wrong: ``message`` says how."""

    def __init__(self, index: int, message: str) -> None:
        super().__init__(message)
        self.index, self.message = index, message


def package_path(file: str, python_path: tuple[str, ...]) -> str | None:
    """``file`` (workspace-relative) relative to the first python-path folder (``""``: the
    root) that holds it: the record path the packaged code finds it under."""
    for folder in python_path:
        if not folder:
            return file
        if file.startswith(folder + "/"):
            return file[len(folder) + 1 :]
    return None


# A folder holding one of these is a package of its own, for the CLI or for Bazel.
_PACKAGE_MARKERS = (BUILD_FILE, "BUILD.bazel", "BUILD")


def data_records(files: Iterable[str], python_path: tuple[str, ...]) -> dict[str, str]:
    """Record path -> file for workspace-relative ``files``, each named by its path below
    the first python-path folder holding it; ``ValueError`` for a file in none of them."""
    records: dict[str, str] = {}
    for file in files:
        record = package_path(file, python_path)
        if record is None:
            raise ValueError(f"{file} is in no python-path folder ({', '.join(p or '.' for p in python_path)})")
        records[record] = file
    return records


def _sub_package(root: Path, base: str, file: str) -> str | None:
    """The first folder between ``base`` (excluded) and ``file`` that marks a package."""
    folder = root / base
    for part in Path(file).relative_to(base or ".").parts[:-1]:
        folder = folder / part
        for marker in _PACKAGE_MARKERS:
            if (folder / marker).is_file():
                return f"{folder.relative_to(root).as_posix()}/{marker}"
    return None


def expand_data(root: Path, base: str, globs: tuple[str, ...], python_path: tuple[str, ...]) -> dict[str, str]:
    """Record path -> workspace-relative file for every file the globs (relative to the
    folder ``base``) match, ``__pycache__`` aside; every glob must match a file, and none a
    file of a sub-package."""
    files: dict[str, str] = {}
    for index, pattern in enumerate(globs):
        if pattern.startswith("/") or ".." in pattern.split("/") or "\\" in pattern:
            raise DataGlobError(index, f"glob {pattern!r} must be relative to the BUILD file, without '..'")
        matches = sorted(
            found.relative_to(root).as_posix()
            for found in (root / base).glob(pattern)
            if found.is_file() and "__pycache__" not in found.parts
        )
        if not matches:
            raise DataGlobError(index, f"glob {pattern!r} matches no file in {base or '.'}/")
        for file in matches:
            marker = _sub_package(root, base, file)
            if marker is not None:
                raise DataGlobError(
                    index,
                    f"glob {pattern!r} matches {file}, which belongs to the sub-package of {marker}: "
                    "Bazel's glob does not enter sub-packages, so a target packages only files of its own "
                    "package; narrow the glob, or list the file under binary",
                )
        try:
            files.update(data_records(matches, python_path))
        except ValueError as exc:
            raise DataGlobError(index, str(exc)) from None
    return files


def carry_dep_resources(exporter: Any, target: "Target", importers: dict["Label", Any]) -> None:
    """Copy into the archive the resources of the packages it interns from a dependency.

    Objects re-exported from a dep's archive bring that archive's code (the exporter's
    importer is the deps' importers first), but resources are read by that code at load
    (a tokenizer's vocabulary), so the archive needs them too: a dep's resource record -
    neither a module source, a pickle nor a framework record - whose package, or one above
    it, this archive interns is copied as is, unless the target saves that record itself.
    """
    from torchpack._pickle_scan import is_pickle

    interned = set(exporter.interned_modules())
    saved = {*target.text, *target.binary, *target.pickle}
    for dep in target.deps:
        reader = importers[dep].zip_reader
        for name in reader.names():
            folders = name.split("/")[:-1]
            if name.startswith(".data/") or name.endswith(".py") or name in saved or not folders:
                continue
            if not any(".".join(folders[:depth]) in interned for depth in range(1, len(folders) + 1)):
                continue
            data = reader.read(name)
            if not is_pickle(name, data):
                saved.add(name)
                exporter.save_binary(".".join(folders), name.rpartition("/")[2], data)
