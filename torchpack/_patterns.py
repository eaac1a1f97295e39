"""Which intern/extern/mock/deny pattern decides a module that several patterns match."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

from ._globbing import GlobGroup
from ._resolution import ModuleAction

#: Which pattern decides a module that several match: the first declared (torch.package's
#: rule, the default), or the most specific ("deny" first, then the pattern with the most
#: literal leading segments, then declaration order), which BUILD.toml targets use so that
#: ``intern = "a.b.**"`` carves a subtree out of ``extern = "a.**"`` whatever the key order.
PatternPrecedence = Literal["first-declared", "most-specific"]


@dataclass
class PatternRule:
    """What one intern/extern/mock/deny call asked for, and whether it matched a module."""

    action: ModuleAction
    allow_empty: bool
    was_matched: bool = False


def deciding_rule(
    patterns: Mapping[GlobGroup, PatternRule], module_name: str, *, most_specific: bool
) -> PatternRule | None:
    """The rule whose action ``module_name`` takes (see :data:`PatternPrecedence`)."""
    if not most_specific:
        for pattern, rule in patterns.items():
            if pattern.matches(module_name):
                return rule
        return None
    best: tuple[tuple[bool, int, bool], PatternRule] | None = None
    for pattern, rule in patterns.items():  # declaration order: the first of equals wins
        specificity = pattern.specificity(module_name)
        if specificity is None:
            continue
        rank = (rule.action is ModuleAction.DENY, *specificity)
        if best is None or rank > best[0]:
            best = (rank, rule)
    return None if best is None else best[1]
