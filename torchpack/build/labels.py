"""Bazel-style target labels.

A label names one target: ``//examples/tinynet:tinynet`` is the target ``tinynet`` declared in
``examples/tinynet/BUILD.toml``.  The package part is the workspace-relative folder; the root
folder is the empty package (``//:name``).  Shorthands, as in Bazel:

* ``//dir`` means ``//dir:<last folder of dir>``;
* ``:name`` is relative to the current package: the BUILD file's folder in ``deps``, the
  working directory's folder on the command line.  In a BUILD file a bare ``name`` means
  ``:name`` (as in Bazel); on the command line ``sub`` and ``sub:name`` are folders relative to
  the working directory;
* ``//dir/...`` (and a relative ``sub/...`` or ``...``) means every target at or below ``dir``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# Bazel allows more characters; these keep labels safe as file names and shell words.
_NAME_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.+-]*")
_SEGMENT_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.+-]*")


class LabelError(ValueError):
    """A string is not a valid label or target pattern."""


@dataclass(frozen=True, order=True)
class Label:
    """A fully-qualified label: workspace-relative package folder and target name."""

    package: str
    name: str

    def __str__(self) -> str:
        return f"//{self.package}:{self.name}"

    @property
    def build_file(self) -> str:
        """Workspace-relative path of the BUILD.toml that declares the target."""
        return f"{self.package}/BUILD.toml" if self.package else "BUILD.toml"


@dataclass(frozen=True)
class Recursive:
    """The pattern ``//package/...``: every target in ``package`` and the folders below it."""

    package: str

    def __str__(self) -> str:
        return f"//{self.package}/..." if self.package else "//..."


def _check_package(package: str, text: str) -> str:
    if package == "":
        return package
    for segment in package.split("/"):
        if not _SEGMENT_RE.fullmatch(segment) or segment in (".", ".."):
            raise LabelError(f"invalid package folder {segment!r} in label {text!r}")
    return package


def _join(current: str, relative: str) -> str:
    return f"{current}/{relative}" if current and relative else current or relative


def parse_label(text: str, current_package: str = "", *, in_build_file: bool = False) -> Label:
    """Parse one target label (no ``...``), resolving relative forms against ``current_package``."""
    if in_build_file and isinstance(text, str) and text and not text.startswith((":", "/")):
        if "/" in text or ":" in text:
            raise LabelError(f"label {text!r} must be absolute ('//dir:name') or local (':name')")
        text = ":" + text
    pattern = parse_pattern(text, current_package)
    if isinstance(pattern, Recursive):
        raise LabelError(f"{text!r} is a pattern, not a single target label")
    return pattern


def parse_pattern(text: str, current_package: str = "") -> Label | Recursive:
    """Parse a label or a recursive ``dir/...`` pattern."""
    if not isinstance(text, str) or not text.strip():
        raise LabelError("empty label")
    if text != text.strip():
        raise LabelError(f"label {text!r} has surrounding spaces")
    if text.startswith("//"):
        body, base = text[2:], ""
    elif text.startswith("/"):
        raise LabelError(f"label {text!r} must start with '//' (workspace root) or be relative")
    else:
        body, base = text, current_package

    if ":" in body:
        package_part, _, name = body.partition(":")
        if ":" in name:
            raise LabelError(f"label {text!r} has more than one ':'")
        if not _NAME_RE.fullmatch(name):
            raise LabelError(f"invalid target name {name!r} in label {text!r}")
        return Label(_check_package(_join(base, package_part.rstrip("/")), text), name)

    body = body.rstrip("/")
    if body == "..." or body.endswith("/..."):
        return Recursive(_check_package(_join(base, body[:-3].rstrip("/")), text))
    package = _check_package(_join(base, body), text)
    if not body:
        raise LabelError(f"label {text!r} names no target (use '//:name' for a target at the root)")
    return Label(package, package.rsplit("/", 1)[-1])
