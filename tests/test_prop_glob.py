"""Property tests: GlobGroup.matches against an independent model of Bazel/Buck glob
semantics (SPEC §7, guide "Patterns").

The model below is a recursive matcher over segments (and, inside a segment, over
characters); it deliberately uses no regular expressions, unlike a typical
implementation:

* candidate and pattern are split on the separator ('.' for modules, '/' for files);
* a literal segment matches exactly; ``*`` inside a segment matches any string
  (including the empty string) within that one segment;
* a segment that is exactly ``**`` matches zero or more whole (non-empty) segments;
* a GlobGroup matches when any include pattern matches and no exclude pattern does.
"""

from __future__ import annotations

import functools

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from strategies import (
    SEPARATORS,
    glob_candidates,
    glob_patterns,
    glob_patterns_near,
    invalid_glob_patterns,
)
from torchpack import GlobGroup
from torchpack._globbing import pattern_specificity

SETTINGS = settings(
    max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)


# ---------------------------------------------------------------------------------------
# The independent model
# ---------------------------------------------------------------------------------------


def segment_matches(pattern: str, text: str) -> bool:
    """'*' matches any run of characters (possibly empty); everything else is literal."""

    @functools.lru_cache(maxsize=None)
    def go(i: int, j: int) -> bool:
        if i == len(pattern):
            return j == len(text)
        if pattern[i] == "*":
            # let the star eat nothing, or one more character
            return go(i + 1, j) or (j < len(text) and go(i, j + 1))
        return j < len(text) and pattern[i] == text[j] and go(i + 1, j + 1)

    return go(0, 0)


def model_matches(pattern: str, candidate: str, separator: str = ".") -> bool:
    psegs = pattern.split(separator)
    csegs = candidate.split(separator)

    @functools.lru_cache(maxsize=None)
    def go(i: int, j: int) -> bool:
        if i == len(psegs):
            return j == len(csegs)
        if psegs[i] == "**":
            if go(i + 1, j):  # zero segments
                return True
            # one more (non-empty) segment, then '**' may go on
            return j < len(csegs) and csegs[j] != "" and go(i, j + 1)
        return j < len(csegs) and segment_matches(psegs[i], csegs[j]) and go(i + 1, j + 1)

    return go(0, 0)


def model_group(include, exclude, candidate, separator="."):
    inc = [include] if isinstance(include, str) else list(include)
    exc = [exclude] if isinstance(exclude, str) else list(exclude)
    return any(model_matches(p, candidate, separator) for p in inc) and not any(
        model_matches(p, candidate, separator) for p in exc
    )


# ---------------------------------------------------------------------------------------
# Pinned expectations (checked against the model AND the library)
# ---------------------------------------------------------------------------------------

PINNED = [
    # (pattern, candidate, separator, expected)
    ("torch.**", "torch", ".", True),
    ("torch.**", "torch.nn", ".", True),
    ("torch.**", "torch.nn.functional", ".", True),
    ("torch.**", "torchvision", ".", False),
    ("torch.*", "torch", ".", False),
    ("torch.*", "torch.nn", ".", True),
    ("torch.*", "torch.functional", ".", True),
    ("torch.*", "torch.nn.functional", ".", False),
    ("torch*.**", "torch", ".", True),
    ("torch*.**", "torchvision", ".", True),
    ("torch*.**", "torchvision.models.resnet", ".", True),
    ("torch*.**", "tor", ".", False),
    ("**", "torch", ".", True),
    ("**", "a.b.c.d", ".", True),
    ("**.c", "c", ".", True),
    ("**.c", "a.b.c", ".", True),
    ("**.c", "a.b.cc", ".", False),
    ("a.**.d", "a.d", ".", True),
    ("a.**.d", "a.b.c.d", ".", True),
    ("a.**.d", "a.b.c", ".", False),
    ("foo*baz*", "foobaz", ".", True),
    ("foo*baz*", "foo_x_baz_y", ".", True),
    ("foo*baz*", "foo.baz", ".", False),
    ("*", "", ".", True),
    ("foo.bar", "foo.bar", ".", True),
    ("foo.bar", "foo_bar", ".", False),  # '.' is the separator, not a regex dot
    ("foo", "foo.bar", ".", False),
    ("a+b", "a+b", ".", True),  # regex metacharacters are literal
    ("a+b", "aab", ".", False),
    ("a?", "ab", ".", False),
    ("(x)", "(x)", ".", True),
    ("a/*.py", "a/b.py", "/", True),
    ("a/**", "a/b/c.py", "/", True),
    ("**/*.py", "a/b/c.py", "/", True),
    ("**/*.py", "c.py", "/", True),
    ("a/*.py", "a/b/c.py", "/", False),
    ("a/*", "a/b.c", "/", True),  # '.' is an ordinary character with '/'
    ("a.b/c", "a.b/c", "/", True),
    ("a.b/c", "axb/c", "/", False),
]


@pytest.mark.parametrize("pattern,candidate,separator,expected", PINNED)
def test_pinned_cases(pattern, candidate, separator, expected):
    assert model_matches(pattern, candidate, separator) is expected  # model sanity
    assert GlobGroup(pattern, separator=separator).matches(candidate) is expected


# ---------------------------------------------------------------------------------------
# Properties
# ---------------------------------------------------------------------------------------


@st.composite
def pattern_cases(draw):
    separator = draw(st.sampled_from(SEPARATORS))
    candidate = draw(glob_candidates(separator))
    if draw(st.booleans()):
        pattern = draw(glob_patterns_near(candidate, separator))
    else:
        pattern = draw(glob_patterns(separator))
    return pattern, candidate, separator


@SETTINGS
@given(case=pattern_cases())
@example(case=("torch.**", "torch", "."))
@example(case=("torch.*", "torch", "."))
@example(case=("torch.*", "torch.nn.functional", "."))
@example(case=("torch*.**", "torchvision", "."))
@example(case=("**", "a.b.c", "."))
@example(case=("**", "a/b/c.py", "/"))
@example(case=("a/**/c.py", "a/b/c.py", "/"))
@example(case=("*/*", "a/b/c.py", "/"))
@example(case=("a.b", "a/b", "/"))
def test_single_pattern_matches_model(case):
    pattern, candidate, separator = case
    expected = model_matches(pattern, candidate, separator)
    g = GlobGroup(pattern, separator=separator)
    assert g.matches(candidate) is expected, (pattern, candidate, separator)
    # matching is a pure function of its input
    assert g.matches(candidate) is expected


@st.composite
def group_cases(draw):
    separator = draw(st.sampled_from(SEPARATORS))
    candidate = draw(glob_candidates(separator))
    near = glob_patterns_near(candidate, separator)
    anyp = glob_patterns(separator)
    include = draw(st.lists(st.one_of(near, anyp), min_size=0, max_size=3))
    exclude = draw(st.lists(st.one_of(near, anyp), min_size=0, max_size=3))
    return include, exclude, candidate, separator


def _as_form(patterns, form):
    """The same pattern list, passed as a str (when there is one), a list or a tuple."""
    if form == "str" and len(patterns) == 1:
        return patterns[0]
    if form == "tuple":
        return tuple(patterns)
    return list(patterns)


@SETTINGS
@given(
    case=group_cases(),
    inc_form=st.sampled_from(["str", "list", "tuple"]),
    exc_form=st.sampled_from(["str", "list", "tuple"]),
)
@example(case=(["torchvision.**"], ["torchvision.models.**"], "torchvision.models.resnet", "."),
         inc_form="list", exc_form="str")
@example(case=(["**"], ["torchvision.**"], "numpy", "."), inc_form="str", exc_form="list")
@example(case=(["**"], ["torchvision.**"], "torchvision", "."), inc_form="str", exc_form="list")
@example(case=([], [], "a", "."), inc_form="list", exc_form="list")
def test_include_exclude_matches_model(case, inc_form, exc_form):
    include, exclude, candidate, separator = case
    expected = model_group(include, exclude, candidate, separator)
    g = GlobGroup(
        _as_form(include, inc_form), exclude=_as_form(exclude, exc_form), separator=separator
    )
    assert g.matches(candidate) is expected


@SETTINGS
@given(case=pattern_cases())
def test_excluding_the_include_pattern_matches_nothing(case):
    pattern, candidate, separator = case
    assert GlobGroup(pattern, exclude=pattern, separator=separator).matches(candidate) is False


@SETTINGS
@given(sep=st.sampled_from(SEPARATORS), data=st.data())
def test_double_star_matches_everything(sep, data):
    candidate = data.draw(glob_candidates(sep))
    assert GlobGroup("**", separator=sep).matches(candidate)
    head = candidate.split(sep)[0]
    # 'head.**' matches the head itself and everything below it
    assert GlobGroup(f"{head}{sep}**", separator=sep).matches(candidate)
    assert GlobGroup(f"{head}{sep}**", separator=sep).matches(head)


@SETTINGS
@given(sep=st.sampled_from(SEPARATORS), data=st.data())
def test_double_star_inside_a_segment_is_rejected(sep, data):
    bad = data.draw(invalid_glob_patterns(sep))
    assert "**" in bad
    with pytest.raises(ValueError):
        GlobGroup(bad, separator=sep)
    with pytest.raises(ValueError):
        GlobGroup(["x", bad], separator=sep)
    with pytest.raises(ValueError):
        GlobGroup("**", exclude=[bad], separator=sep)


@pytest.mark.parametrize("bad", ["foo**", "**foo", "foo.bar**", "a.**b.c", "***", "a.***"])
def test_double_star_inside_a_segment_examples(bad):
    with pytest.raises(ValueError):
        GlobGroup(bad)


# Any string at all, including empty segments, separators next to each other and '*' in
# candidates: the library must behave exactly like torch.package's GlobGroup (drop-in).
_wild = st.text(alphabet="ab./*+_", max_size=8)


@SETTINGS
@given(
    sep=st.sampled_from(SEPARATORS),
    include=st.lists(_wild, max_size=2),
    exclude=st.lists(_wild, max_size=2),
    candidates=st.lists(_wild, min_size=1, max_size=4),
)
@example(sep=".", include=["**"], exclude=[], candidates=["", ".", "a..b", "a."])
@example(sep=".", include=["a.*"], exclude=[], candidates=["a.", "a"])
def test_same_as_torch_package_on_arbitrary_strings(sep, include, exclude, candidates):
    from torch.package.glob_group import GlobGroup as TorchGlobGroup

    try:
        ref = TorchGlobGroup(include, exclude=exclude, separator=sep)
    except ValueError:
        with pytest.raises(ValueError):
            GlobGroup(include, exclude=exclude, separator=sep)
        return
    g = GlobGroup(include, exclude=exclude, separator=sep)
    for c in candidates:
        assert g.matches(c) is ref.matches(c), (include, exclude, c)


@SETTINGS
@given(case=group_cases())
@example(case=(["t.**", "t.models.gpt2.**"], [], "t.models.gpt2.modeling", "."))
@example(case=(["t.models.gpt2.**"], ["t.models.gpt2.tests.**"], "t.models.gpt2.tests.x", "."))
@example(case=(["a.*.c", "a.b"], [], "a.b", "."))
def test_specificity_is_given_exactly_for_matches(case):
    """``specificity`` is the rank of the narrowest matching include, None when no match."""
    include, exclude, candidate, separator = case
    group = GlobGroup(include, exclude=exclude, separator=separator)
    rank = group.specificity(candidate)
    assert (rank is not None) is group.matches(candidate)
    if rank is not None:
        matching = [p for p in include if model_group([p], exclude, candidate, separator)]
        assert rank == max(pattern_specificity(p, separator) for p in matching)
        literal, exact = rank
        assert 0 <= literal <= len(candidate.split(separator))
        assert not exact or literal == len(candidate.split(separator))


def test_narrower_patterns_rank_higher():
    ranks = [pattern_specificity(p) for p in ("**", "t.**", "t.*.gpt2", "t.models.**", "t.models", "t.models.gpt2.**")]
    assert ranks == sorted(ranks)
    assert pattern_specificity("t.models") > pattern_specificity("t.models.**")
