"""A printable, queryable tree of the records in a package (``PackageImporter.file_structure``)."""

from __future__ import annotations

from collections.abc import Iterable

from ._gc import collector_paused
from ._globbing import GlobGroup, GlobPattern, _as_list

__all__ = ["Directory"]

_LAST = "\u2514\u2500\u2500 "
_MIDDLE = "\u251c\u2500\u2500 "
_ROOT = "\u2500\u2500\u2500 "
_CONTINUE = "\u2502   "
_BLANK = "    "


class Directory:
    """A folder of the package: ``children`` maps names to sub-folders and files."""

    # A tree of a large archive holds one per record.
    __slots__ = ("name", "is_dir", "children")

    def __init__(self, name: str, is_dir: bool) -> None:
        self.name = name
        self.is_dir = is_dir
        self.children: dict[str, "Directory"] = {}

    def _subdirectory(self, dirs: list[str]) -> "Directory":
        """The sub-folder at ``dirs``, created on the way if missing."""
        folder = self
        for part in dirs:
            folder = folder.children.setdefault(part, Directory(part, True))
        return folder

    def has_file(self, filename: str) -> bool:
        """Whether ``filename`` (a ``/``-separated path relative to this folder) exists here.

        As in torch.package, a folder counts too.
        """
        node: Directory | None = self
        for part in filename.split("/"):
            node = node.children.get(part) if node is not None else None
        return node is not None

    def __str__(self) -> str:
        lines: list[str] = []
        self._render(lines, "", _ROOT)
        return "".join(lines)

    def _render(self, lines: list[str], indent: str, pointer: str) -> None:
        lines.append(f"{indent}{pointer}{self.name}\n")
        indent += _CONTINUE if pointer == _MIDDLE else _BLANK
        folders = sorted(name for name, child in self.children.items() if child.is_dir)
        files = sorted(name for name, child in self.children.items() if not child.is_dir)
        entries = [(name, True) for name in folders] + [(name, False) for name in files]
        for index, (name, is_dir) in enumerate(entries):
            child_pointer = _LAST if index == len(entries) - 1 else _MIDDLE
            if is_dir:
                self.children[name]._render(lines, indent, child_pointer)
            else:
                lines.append(f"{indent}{child_pointer}{name}\n")


@collector_paused()  # one object per record, each with a dict: the collector would chase them all
def directory_from_records(
    root_name: str, names: Iterable[str], include: GlobPattern = "**", exclude: GlobPattern = ()
) -> Directory:
    """A :class:`Directory` of the record ``names`` that match ``include`` and not ``exclude``."""
    selection: GlobGroup | None = GlobGroup(include, exclude=exclude, separator="/")
    if _as_list(include) == ["**"] and not _as_list(exclude):
        selection = None  # every record name matches: no empty segment, which "**" would refuse
    root = Directory(root_name, True)
    folders = {"": root}  # by path: records come by the thousand per folder
    for name in names:
        if selection is not None and not selection.matches(name):
            continue
        folder_path, _, file_name = name.rpartition("/")
        folder = folders.get(folder_path)
        if folder is None:
            folder = folders[folder_path] = root._subdirectory(folder_path.split("/"))
        folder.children[file_name] = Directory(file_name, False)
        # A record named like a folder replaces that folder in the tree, as it did when
        # every record walked the tree from the root.
        folders.pop(name, None)
    return root
