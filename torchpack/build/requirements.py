"""``requires``: PEP 508 requirements a target's build environment must satisfy.

A different numpy in the build venv can change an archive's bytes without a word; a target
that pins its externs (``requires = ["numpy>=2,<3"]``) fails to build instead, and the
archive's provenance records the pins.  Parsing and matching are ``packaging``'s, the
reference implementation of PEP 440 and PEP 508.
"""

from __future__ import annotations

from collections.abc import Iterable


def normalise_requirement(text: str, index: int = 0) -> str:
    """The canonical text of one requirement; ``ValueError(why, index)`` when it is not PEP 508."""
    from packaging.requirements import InvalidRequirement, Requirement

    try:
        return str(Requirement(text))
    except InvalidRequirement as exc:
        raise ValueError(f"{text!r} is not a PEP 508 requirement: {' '.join(str(exc).split())}", index) from None


def unsatisfied(requirement: str) -> str | None:
    """Why the running environment does not satisfy ``requirement``, or ``None`` when it does.

    A requirement whose environment marker is false here (``; python_version < '3.11'``) is
    satisfied; pre-releases satisfy a specifier, as an installed version is what it is.
    """
    from packaging.requirements import Requirement

    from torchpack._records import installed_version

    parsed = Requirement(requirement)
    if parsed.marker is not None and not parsed.marker.evaluate():
        return None
    version = installed_version(parsed.name)
    if version is None:
        return f"requirement {requirement!r} is not satisfied: {parsed.name} is not installed"
    if not parsed.specifier.contains(version, prereleases=True):
        return f"requirement {requirement!r} is not satisfied: {parsed.name} {version} is installed"
    return None


def first_unsatisfied(requirements: Iterable[str]) -> tuple[int, str] | None:
    """The index and reason of the first requirement the environment does not satisfy."""
    for index, requirement in enumerate(requirements):
        reason = unsatisfied(requirement)
        if reason is not None:
            return index, reason
    return None
