"""Where in a BUILD.toml text a key or a syntax error is, for error messages.

tomllib reports syntax errors with positions in different shapes across Python versions and
keeps no positions for parsed keys; these helpers recover both, best effort.
"""

from __future__ import annotations

import json
import re


def syntax_position(exc: Exception, text: str) -> tuple[int | None, int | None, str]:
    """(line, column, message) of a tomllib error, the position taken out of the message."""
    # Python 3.14 gives lineno/colno attributes; older tomllib only puts them in the message.
    message = str(exc)
    line, column = getattr(exc, "lineno", None), getattr(exc, "colno", None)
    match = re.search(r"\s*\(at line (\d+), column (\d+)\)$", message)
    if match:
        message = message[: match.start()]
        line, column = line or int(match.group(1)), column or int(match.group(2))
    elif message.endswith("(at end of document)"):
        message = message[: -len("(at end of document)")].rstrip() + " at the end of the file"
        lines = text.splitlines() or [""]
        line, column = len(lines), len(lines[-1]) + 1
    return line, column, message


_KEY_TOKEN_RE = re.compile(r'\s*(?:"((?:[^"\\]|\\.)*)"|\'([^\']*)\'|([A-Za-z0-9_-]+))\s*(\.)?')


def _split_key(text: str) -> tuple[list[str], str]:
    """Parse a dotted TOML key at the start of ``text``; return the parts and the rest."""
    parts: list[str] = []
    pos = 0
    while True:
        match = _KEY_TOKEN_RE.match(text, pos)
        if not match:
            return parts, text[pos:]
        basic, literal, bare = match.groups()[:3]
        parts.append(json.loads(f'"{basic}"') if basic is not None else literal if literal is not None else bare)
        pos = match.end()
        if not match.group(4):
            return parts, text[pos:]


def locate_key(text: str | None, path: tuple[str | int, ...]) -> int | None:
    """Best-effort line of the deepest table header or key that leads to ``path``.

    tomllib keeps no positions, so this scans headers and ``key =`` lines; multi-line strings
    can fool it, which only costs a less precise line number.
    """
    if text is None:
        return None
    wanted = [p for p in path if isinstance(p, str)]
    best, best_depth = None, 0
    header: list[str] = []
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if line.startswith("["):
            parts, rest = _split_key(line.lstrip("["))
            if not rest.lstrip().startswith("]"):
                continue
            header, full = parts, parts
        else:
            parts, rest = _split_key(line)
            if not parts or not rest.startswith("="):
                continue
            full = header + parts
        depth = len(full)
        if depth > best_depth and wanted[:depth] == full:
            best, best_depth = number, depth
    return best
