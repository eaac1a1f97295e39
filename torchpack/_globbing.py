"""Bazel/Buck-style glob patterns over dotted module names (or slash-separated paths).

A pattern is split into segments on the separator. A segment that is exactly ``**`` matches
zero or more whole segments; any other segment matches exactly one segment, where ``*``
stands for any run of characters (possibly empty) that contains no separator.
Patterns compile to one anchored regular expression each, so matching is a single
``re.fullmatch`` per pattern however deep the candidate.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Union

GlobPattern = Union[str, Iterable[str]]


def _segment_regex(segment: str, separator: str) -> str:
    if "**" in segment:
        raise ValueError(
            f"glob segment {segment!r} is invalid: '**' must be a whole segment on its own"
        )
    not_separator = f"[^{re.escape(separator)}]"
    return f"{not_separator}*".join(re.escape(part) for part in segment.split("*"))


def compile_glob(pattern: str, separator: str = ".") -> re.Pattern[str]:
    """Compile one glob pattern to an anchored regex.

    The regex is matched against ``separator + candidate``: with every segment carrying its
    own leading separator, ``**`` can match zero segments without leaving a dangling one.
    """
    sep = re.escape(separator)
    pieces = [
        f"(?:{sep}[^{sep}]+)*" if part == "**" else sep + _segment_regex(part, separator)
        for part in pattern.split(separator)
    ]
    return re.compile("".join(pieces), re.DOTALL)


def pattern_specificity(pattern: str, separator: str = ".") -> tuple[int, bool]:
    """``(literal leading segments, no wildcard at all)``: larger names a narrower set.

    ``a.b.**`` -> ``(2, False)``, ``a.b`` -> ``(2, True)``, ``a.*.c`` -> ``(1, False)``: an exact
    name beats a glob with the same literal prefix, and a deeper prefix beats a shallower one.
    """
    segments = pattern.split(separator)
    literal = 0
    for segment in segments:
        if "*" in segment:
            return literal, False
        literal += 1
    return literal, True


def _as_list(patterns: GlobPattern) -> list[str]:
    return [patterns] if isinstance(patterns, str) else list(patterns)


class GlobGroup:
    """A set of include patterns minus a set of exclude patterns.

    >>> GlobGroup("torch.**", exclude=["torch.jit.**"]).matches("torch.nn.functional")
    True
    """

    def __init__(self, include: GlobPattern, *, exclude: GlobPattern = (), separator: str = ".") -> None:
        self._include_patterns = _as_list(include)
        self._exclude_patterns = _as_list(exclude)
        self.separator = separator
        self.include = [compile_glob(p, separator) for p in self._include_patterns]
        self.exclude = [compile_glob(p, separator) for p in self._exclude_patterns]
        self._repr = f"GlobGroup(include={self._include_patterns}, exclude={self._exclude_patterns})"
        self._include_ranks = [pattern_specificity(p, separator) for p in self._include_patterns]

    def __str__(self) -> str:
        return self._repr

    def __repr__(self) -> str:
        return self._repr

    def specificity(self, candidate: str) -> tuple[int, bool] | None:
        """How specifically this group names ``candidate``: the :func:`pattern_specificity` of
        its most specific include pattern that matches, or ``None`` when the group does not."""
        from ._mangling import demangle

        prefixed = self.separator + demangle(candidate)
        if any(p.fullmatch(prefixed) for p in self.exclude):
            return None
        ranks = [rank for p, rank in zip(self.include, self._include_ranks) if p.fullmatch(prefixed)]
        return max(ranks) if ranks else None

    def matches(self, candidate: str) -> bool:
        # Strip any mangling first so a module of a loaded package matches its original name.
        from ._mangling import demangle

        prefixed = self.separator + demangle(candidate)
        return any(p.fullmatch(prefixed) for p in self.include) and not any(
            p.fullmatch(prefixed) for p in self.exclude
        )
