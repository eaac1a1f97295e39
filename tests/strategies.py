"""Hypothesis strategies shared by the property tests (tests/test_prop_*.py).

Everything random that the property tests feed to torchpack is built here:

* module-name segments and dotted module names;
* glob candidates and glob patterns (literal segments, segments with ``*``, ``**``), for
  the ``.`` (modules) and ``/`` (file paths) separators, plus invalid patterns;
* tensors of every dtype torch can serialise (bfloat16, complex, float8, unsigned,
  bool, ...), empty and 0-d ones, non-contiguous views (transpose, strided slices,
  select, expand), ``torch.nn.Parameter``s;
* nested picklable containers of tensors/ints/str/floats/bytes/None that share tensor
  references, share one storage between several views, and share mutable containers;
* text and binary resources with valid package and resource names;
* lists of archive record names, safe ones and ones that could escape a folder.

Comparison helpers that understand those objects (bit-exact tensors and floats, identity
and storage sharing) live here too, so every property test judges equality the same way.
"""

from __future__ import annotations

import collections
import keyword
import math
import struct
from typing import Any

import torch
from hypothesis import strategies as st

# ---------------------------------------------------------------------------------------
# Module names
# ---------------------------------------------------------------------------------------

module_segments = st.from_regex(r"[a-z_][a-z0-9_]{0,7}", fullmatch=True).filter(
    lambda s: not keyword.iskeyword(s) and not s.startswith("__")
)
"""One segment of a Python module name: a lowercase identifier, never a keyword."""

dotted_module_names = st.lists(module_segments, min_size=1, max_size=4).map(".".join)
"""A dotted module name such as ``foo.bar_1.baz``."""

# ---------------------------------------------------------------------------------------
# Globs
# ---------------------------------------------------------------------------------------

SEPARATORS = (".", "/")

# Characters a candidate segment may use. Small, so that random patterns and candidates
# collide often, and salted with regex metacharacters so that an implementation that
# forgets to escape them is caught. Never the separator itself, never '*'.
_GLOB_CHARS = {
    ".": "ab_+?()[]$^|\\-{}",
    "/": "ab._+?()[]$^|\\-{}",
}


def glob_segment_text(separator: str, min_size: int = 1, max_size: int = 3):
    return st.text(alphabet=_GLOB_CHARS[separator], min_size=min_size, max_size=max_size)


def glob_candidates(separator: str = "."):
    """Candidate strings: one or more non-empty segments joined by ``separator``."""
    return st.lists(glob_segment_text(separator), min_size=1, max_size=5).map(separator.join)


@st.composite
def _wildcard_segment(draw, separator):
    """A segment with one or more single '*' wildcards, never '**' inside it."""
    pieces = draw(st.lists(glob_segment_text(separator, 0, 2), min_size=2, max_size=4))
    seg = "*".join(pieces)
    while "**" in seg:
        seg = seg.replace("**", "*")
    return seg


def glob_pattern_segments(separator: str = "."):
    return st.one_of(
        glob_segment_text(separator),  # literal
        st.just("*"),
        st.just("**"),
        _wildcard_segment(separator),
    )


def glob_patterns(separator: str = "."):
    """Random valid glob patterns."""
    return st.lists(glob_pattern_segments(separator), min_size=1, max_size=5).map(
        separator.join
    )


@st.composite
def glob_patterns_near(draw, candidate: str, separator: str = "."):
    """A pattern derived from ``candidate`` by local mutations, so that it matches it
    (or nearly does) much more often than a random pattern would."""
    segs = candidate.split(separator)
    out: list[str] = []
    i = 0
    while i < len(segs):
        choice = draw(st.integers(0, 6))
        seg = segs[i]
        if choice == 0:
            out.append("*")
            i += 1
        elif choice == 1:
            # '**' swallowing 0..2 segments
            n = draw(st.integers(0, min(2, len(segs) - i)))
            out.append("**")
            i += n
        elif choice == 2 and seg:
            # replace a substring of the segment with '*'
            a = draw(st.integers(0, len(seg)))
            b = draw(st.integers(a, len(seg)))
            out.append(seg[:a] + "*" + seg[b:])
            i += 1
        elif choice == 3:
            # a random segment instead (usually breaks the match)
            out.append(draw(glob_pattern_segments(separator)))
            i += 1
        else:
            out.append(seg)
            i += 1
    if draw(st.booleans()):
        out.append(draw(st.sampled_from(["**", "*", "x"])))
    pattern = separator.join(out)
    # '*' next to '*' inside one segment ('a**' from 'a*' + '*b'...) is not a valid glob
    return separator.join(
        "**" if s == "**" else _collapse_stars(s) for s in pattern.split(separator)
    )


def _collapse_stars(seg: str) -> str:
    while "**" in seg:
        seg = seg.replace("**", "*")
    return seg


@st.composite
def invalid_glob_segments(draw, separator: str = "."):
    """A segment containing '**' that is not exactly '**' (e.g. 'foo**', '***')."""
    before = draw(glob_segment_text(separator, 0, 2).map(lambda s: s.rstrip("*")))
    after = draw(glob_segment_text(separator, 0, 2))
    stars = draw(st.integers(2, 4))
    seg = before + "*" * stars + after
    if seg == "**":
        seg = "a**"
    return seg


@st.composite
def invalid_glob_patterns(draw, separator: str = "."):
    good = draw(st.lists(glob_pattern_segments(separator), min_size=0, max_size=3))
    bad = draw(invalid_glob_segments(separator))
    pos = draw(st.integers(0, len(good)))
    return separator.join(good[:pos] + [bad] + good[pos:])


# ---------------------------------------------------------------------------------------
# Tensors
# ---------------------------------------------------------------------------------------

CORE_DTYPES = [
    torch.float16,
    torch.bfloat16,
    torch.float32,
    torch.float64,
    torch.complex64,
    torch.complex128,
    torch.int8,
    torch.uint8,
    torch.int16,
    torch.int32,
    torch.int64,
    torch.bool,
]
EXTRA_DTYPES = [
    torch.complex32,
    torch.uint16,
    torch.uint32,
    torch.uint64,
    torch.float8_e4m3fn,
    torch.float8_e5m2,
]
ALL_DTYPES = CORE_DTYPES + EXTRA_DTYPES
"""Every dtype torch.package round-trips (checked against torch 2.13)."""

GRAD_DTYPES = {dtype for dtype in CORE_DTYPES if dtype.is_floating_point or dtype.is_complex}
"""Dtypes for which a Parameter may have requires_grad=True."""

shapes = st.lists(st.integers(0, 4), min_size=0, max_size=3)
"""Small shapes, including 0-d (``[]``) and empty (a 0 somewhere)."""


@st.composite
def base_tensors(draw, dtypes=ALL_DTYPES, shape=shapes):
    """A fresh contiguous tensor owning its storage, with arbitrary bit patterns
    (NaN payloads, infinities, subnormals and -0.0 included) except for bool,
    whose bytes are 0 or 1."""
    dtype = draw(st.sampled_from(dtypes))
    dims = draw(shape)
    numel = math.prod(dims)
    if numel == 0:
        return torch.empty(dims, dtype=dtype)
    if dtype is torch.bool:
        vals = draw(st.lists(st.booleans(), min_size=numel, max_size=numel))
        return torch.tensor(vals, dtype=torch.bool).reshape(dims)
    size = torch.empty((), dtype=dtype).element_size()
    raw = draw(st.binary(min_size=numel * size, max_size=numel * size))
    flat = torch.frombuffer(bytearray(raw), dtype=torch.uint8).clone()
    return flat.view(dtype).reshape(dims)


@st.composite
def views_of(draw, base: torch.Tensor, max_ops: int = 2):
    """A view of ``base`` sharing its storage, usually non-contiguous: transpose,
    strided slice, select, narrow, expand (stride 0)."""
    t = base
    for _ in range(draw(st.integers(0, max_ops))):
        op = draw(st.integers(0, 4))
        if op == 0 and t.dim() >= 2:
            d0, d1 = draw(st.permutations(range(t.dim())))[:2]
            t = t.transpose(d0, d1)
        elif op == 1 and t.dim() >= 1:
            d = draw(st.integers(0, t.dim() - 1))
            n = t.shape[d]
            start = draw(st.integers(0, n))
            step = draw(st.integers(1, 3))
            idx = [slice(None)] * t.dim()
            idx[d] = slice(start, None, step)
            t = t[tuple(idx)]
        elif op == 2 and t.dim() >= 1:
            d = draw(st.integers(0, t.dim() - 1))
            if t.shape[d] > 0:
                t = t.select(d, draw(st.integers(0, t.shape[d] - 1)))
        elif op == 3 and t.dim() >= 1:
            d = draw(st.integers(0, t.dim() - 1))
            n = t.shape[d]
            start = draw(st.integers(0, n))
            t = t.narrow(d, start, draw(st.integers(0, n - start)))
        elif op == 4 and t.dim() < 3:
            t = t.unsqueeze(0).expand(draw(st.integers(1, 3)), *t.shape)
    return t


@st.composite
def parameters_of(draw, t: torch.Tensor):
    requires_grad = t.dtype in GRAD_DTYPES and draw(st.booleans())
    return torch.nn.Parameter(t, requires_grad=requires_grad)


@st.composite
def tensors(draw, dtypes=ALL_DTYPES):
    """One tensor: contiguous, a non-contiguous view, or a Parameter."""
    base = draw(base_tensors(dtypes))
    kind = draw(st.integers(0, 2))
    if kind == 0:
        return base
    view = draw(views_of(base))
    if kind == 1:
        return view
    return draw(parameters_of(view))


@st.composite
def tensor_pools(draw, dtypes=ALL_DTYPES, max_storages=3):
    """A list of tensors in which several are views of one storage (and some are
    Parameters wrapping such views); drawing leaves from the pool with sampled_from
    then also gives repeated references to the very same tensor object."""
    pool: list[torch.Tensor] = []
    for _ in range(draw(st.integers(1, max_storages))):
        base = draw(base_tensors(dtypes))
        for _ in range(draw(st.integers(1, 3))):
            kind = draw(st.integers(0, 3))
            if kind == 0:
                pool.append(base)
            elif kind == 1 or kind == 2:
                pool.append(draw(views_of(base)))
            else:
                pool.append(draw(parameters_of(draw(views_of(base)))))
    return pool


# ---------------------------------------------------------------------------------------
# Nested picklable containers
# ---------------------------------------------------------------------------------------

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),  # big ints too
    st.floats(allow_nan=True, allow_infinity=True),  # compared bit-for-bit
    st.text(alphabet=st.characters(codec="utf-8"), max_size=8),
    st.binary(max_size=8),
)
dict_keys = st.one_of(st.text(max_size=6), st.integers(-5, 100))


def _point_strategy(children):
    from prop_pkg.models import Point  # tests/corpus is on sys.path (conftest.py)

    return st.builds(Point, st.integers(-3, 3), st.integers(-3, 3), children)


@st.composite
def nested_objects(draw, with_points: bool = False, with_sets: bool = True, max_leaves: int = 12):
    """A nested container (list/tuple/dict/OrderedDict/frozenset...) whose leaves are
    scalars and tensors drawn from a shared pool (so the same tensor object and several
    views of one storage show up in different places). Mutable sub-containers are
    sometimes referenced twice. ``with_points`` adds instances of prop_pkg.models.Point,
    a class that must be interned."""
    pool = draw(tensor_pools())
    leaves = scalars | st.sampled_from(pool)

    def extend(children):
        options = [
            st.lists(children, max_size=4),
            st.lists(children, max_size=3).map(tuple),
            st.dictionaries(dict_keys, children, max_size=4),
            st.dictionaries(st.text(max_size=4), children, max_size=3).map(
                collections.OrderedDict
            ),
        ]
        if with_sets:
            # Colliding int hashes (-50..50 in an 8-slot table) make a set's iteration
            # order depend on insertion order, and str hashes depend on PYTHONHASHSEED:
            # torchpack pickles sets in a canonical (sorted) order, so neither may leak
            # into the archive bytes.
            for elems in (st.integers(-50, 50), st.text(max_size=4)):
                options.append(st.frozensets(elems, max_size=5))
                options.append(st.sets(elems, max_size=5))
        if with_points:
            options.append(_point_strategy(children))
        return st.one_of(options)

    obj = draw(st.recursive(leaves, extend, max_leaves=max_leaves))
    # share a mutable container between two places
    if draw(st.booleans()):
        shared = draw(st.lists(st.sampled_from(pool), min_size=1, max_size=2))
        obj = {"a": obj, "s1": shared, "s2": [shared, pool[0]], "pool": list(pool)}
    else:
        obj = [obj, list(pool)]
    return obj


# ---------------------------------------------------------------------------------------
# Resources
# ---------------------------------------------------------------------------------------

resource_names = st.builds(
    lambda stem, ext: stem + ext,
    st.from_regex(r"[a-z0-9_][a-z0-9_\-]{0,7}", fullmatch=True),
    st.sampled_from([".txt", ".bin", ".json", ".dat", ".cfg"]),
)
"""A resource (file) name. It always has an extension, and module-name segments never
contain a dot, so a resource file can never collide with a package folder."""

resource_texts = st.text(alphabet=st.characters(codec="utf-8"), max_size=40)


@st.composite
def resource_sets(draw, max_size: int = 5):
    """A list of (kind, package, resource, content) with unique (package, resource);
    kind is 'text' (content: str) or 'binary' (content: bytes)."""
    items = draw(
        st.lists(
            st.tuples(
                st.sampled_from(["text", "binary"]),
                dotted_module_names,
                resource_names,
            ),
            max_size=max_size,
            unique_by=lambda t: (t[1], t[2]),
        )
    )
    out = []
    for kind, pkg, res in items:
        content = draw(resource_texts if kind == "text" else st.binary(max_size=64))
        out.append((kind, pkg, res, content))
    return out


# ---------------------------------------------------------------------------------------
# Structural copy
# ---------------------------------------------------------------------------------------


def structural_copy(obj: Any) -> Any:
    """An equal copy of a generated object at other addresses: every storage cloned once
    (so tensors that shared a storage, even an empty one, still share the clone), every
    tensor rebuilt with the same offset/size/stride, Parameters re-wrapped with the same
    requires_grad, mutable containers and Points copied once (identity kept).
    copy.deepcopy does not do this (Parameter.__deepcopy__ clones its data and un-shares
    the storage), nor does torch.save/torch.load (it un-shares empty storages)."""
    storages: dict[int, torch.UntypedStorage] = {}
    memo: dict[int, Any] = {}

    def go(x):
        if id(x) in memo:
            return memo[id(x)]
        if isinstance(x, torch.Tensor):
            src = x.untyped_storage()
            new_storage = storages.setdefault(src._cdata, src.clone())
            t = torch.empty(0, dtype=x.dtype).set_(
                new_storage, x.storage_offset(), x.size(), x.stride()
            )
            if isinstance(x, torch.nn.Parameter):
                t = torch.nn.Parameter(t, requires_grad=x.requires_grad)
            memo[id(x)] = t
            return t
        if _is_point(x):
            new = object.__new__(type(x))
            memo[id(x)] = new
            new.__dict__.update(go(vars(x)))
            return new
        if isinstance(x, list):
            new = []
            memo[id(x)] = new
            new.extend(go(v) for v in x)
            return new
        if isinstance(x, dict):
            new = type(x)()
            memo[id(x)] = new
            for k, v in x.items():
                new[k] = go(v)
            return new
        if isinstance(x, tuple):
            new = tuple(go(v) for v in x)
            memo[id(x)] = new
            return new
        if isinstance(x, set):
            new = set(x)
            memo[id(x)] = new
            return new
        return x  # immutable scalars, frozensets

    return go(obj)


# ---------------------------------------------------------------------------------------
# Comparison helpers
# ---------------------------------------------------------------------------------------


def tensor_bits(t: torch.Tensor) -> torch.Tensor:
    """The tensor's elements (in logical order, strides ignored) as raw bytes."""
    if t.numel() == 0:
        return torch.empty(0, dtype=torch.uint8)
    fresh = torch.empty(t.shape, dtype=t.dtype)  # contiguous, stride(-1) == 1
    fresh.copy_(t.detach())
    return fresh.view(-1).view(torch.uint8)


def _float_bits(x: float) -> bytes:
    return struct.pack("<d", x)


_MUTABLE = (list, dict, set, torch.Tensor)


def _demangle(name: str) -> str:
    if name.startswith("<torch_package_"):
        return name.partition(">.")[2]
    return name


class Mismatch(AssertionError):
    pass


def assert_equivalent(orig: Any, loaded: Any) -> None:
    """Deep equality for what the strategies generate: same types, bit-identical
    tensors (dtype, shape, values; strides not compared) and floats, requires_grad and
    Parameter-ness preserved, the identity structure of mutable objects preserved (an
    object referenced twice is still one object), and tensors share a storage after
    loading exactly when they shared one before. Classes from a package compare by
    demangled module and qualified name."""
    fwd: dict[int, Any] = {}
    back: dict[int, Any] = {}
    pairs: list[tuple[torch.Tensor, torch.Tensor]] = []
    keep_alive: list[Any] = []
    _cmp(orig, loaded, "obj", fwd, back, pairs, keep_alive)
    _check_storage_sharing(pairs)


def _cmp(a, b, path, fwd, back, pairs, keep_alive):
    if isinstance(a, _MUTABLE) or _is_point(a):
        if id(a) in fwd:
            if fwd[id(a)] is not b:
                raise Mismatch(f"{path}: object referenced twice was loaded as two objects")
            return
        if id(b) in back:
            raise Mismatch(f"{path}: two distinct objects were loaded as one object")
        fwd[id(a)] = b
        back[id(b)] = a
        keep_alive.extend((a, b))

    if isinstance(a, torch.Tensor):
        if not isinstance(b, torch.Tensor):
            raise Mismatch(f"{path}: expected a tensor, got {type(b)}")
        if isinstance(a, torch.nn.Parameter) != isinstance(b, torch.nn.Parameter):
            raise Mismatch(f"{path}: Parameter-ness {type(a)} vs {type(b)}")
        if a.dtype != b.dtype:
            raise Mismatch(f"{path}: dtype {a.dtype} vs {b.dtype}")
        if a.shape != b.shape:
            raise Mismatch(f"{path}: shape {tuple(a.shape)} vs {tuple(b.shape)}")
        if a.requires_grad != b.requires_grad:
            raise Mismatch(f"{path}: requires_grad {a.requires_grad} vs {b.requires_grad}")
        if b.device.type != "cpu":
            raise Mismatch(f"{path}: loaded on {b.device}")
        if not torch.equal(tensor_bits(a), tensor_bits(b)):
            raise Mismatch(f"{path}: values differ:\n{a!r}\nvs\n{b!r}")
        pairs.append((a, b))
        return

    if _is_point(a):
        if type(b).__name__ != "Point" or _demangle(type(b).__module__) != "prop_pkg.models":
            raise Mismatch(f"{path}: expected a prop_pkg.models.Point, got {type(b)}")
        _cmp(vars(a), vars(b), path + ".__dict__", fwd, back, pairs, keep_alive)
        return

    if type(a) is not type(b):
        raise Mismatch(f"{path}: type {type(a)} vs {type(b)}")
    if isinstance(a, float):
        if _float_bits(a) != _float_bits(b):
            raise Mismatch(f"{path}: float {a!r} vs {b!r}")
    elif isinstance(a, (list, tuple)):
        if len(a) != len(b):
            raise Mismatch(f"{path}: length {len(a)} vs {len(b)}")
        for i, (x, y) in enumerate(zip(a, b)):
            _cmp(x, y, f"{path}[{i}]", fwd, back, pairs, keep_alive)
    elif isinstance(a, dict):
        if list(a.keys()) != list(b.keys()):
            raise Mismatch(f"{path}: keys {list(a)} vs {list(b)}")
        for k in a:
            _cmp(a[k], b[k], f"{path}[{k!r}]", fwd, back, pairs, keep_alive)
    else:  # None, bool, int, str, bytes, set, frozenset
        if a != b:
            raise Mismatch(f"{path}: {a!r} vs {b!r}")


def _is_point(x) -> bool:
    t = type(x)
    return t.__name__ == "Point" and _demangle(t.__module__) == "prop_pkg.models"


def _storage_key(t: torch.Tensor):
    s = t.untyped_storage()
    if s.nbytes() == 0:
        return None  # empty storages have no meaningful address
    return s.data_ptr()


def _check_storage_sharing(pairs):
    n = len(pairs)
    keys = [(_storage_key(a), _storage_key(b)) for a, b in pairs]
    for i in range(n):
        for j in range(i + 1, n):
            (ai, bi), (aj, bj) = keys[i], keys[j]
            if None in (ai, aj, bi, bj):
                continue
            if (ai == aj) != (bi == bj):
                raise Mismatch(
                    f"tensors #{i} and #{j}: shared storage before={ai == aj} "
                    f"after={bi == bj}"
                )


# ---------------------------------------------------------------------------------------
# Damage to valid archives (the reader's fuzz properties)
# ---------------------------------------------------------------------------------------

# Fields of a central-directory entry as (offset in the entry, struct format): flags, method,
# time, date, CRC-32, sizes, name/extra/comment lengths, disk, attributes, header offset.
CENTRAL_ENTRY_FIELDS = (
    (8, "<H"), (10, "<H"), (12, "<H"), (14, "<H"), (16, "<I"), (20, "<I"), (24, "<I"),
    (28, "<H"), (30, "<H"), (32, "<H"), (34, "<H"), (36, "<H"), (38, "<I"), (42, "<I"),
)


@st.composite
def byte_flips(draw, size: int):
    """("flip", positions and XOR masks): one to three bytes changed anywhere in the file."""
    count = draw(st.integers(1, 3))
    return ("flip", [(draw(st.integers(0, size - 1)), draw(st.integers(1, 255))) for _ in range(count)])


@st.composite
def truncations(draw, size: int):
    """("truncate", new length): the file cut short, as by an interrupted download."""
    return ("truncate", draw(st.integers(0, size - 1)))


@st.composite
def record_table_edits(draw, entry_count: int):
    """("table", entry index, field offset, struct format, new value): one field of one
    central-directory entry overwritten - sizes, CRCs, offsets, lengths, flags, method."""
    offset, fmt = draw(st.sampled_from(CENTRAL_ENTRY_FIELDS))
    limit = 0xFFFF if fmt == "<H" else 0xFFFFFFFF
    value = draw(st.one_of(st.integers(0, 64), st.integers(0, limit), st.sampled_from([0, limit, limit - 1])))
    return ("table", draw(st.integers(0, entry_count - 1)), offset, fmt, value)


def archive_damage(size: int, entry_count: int):
    """Any one of the damages above, for an archive of ``size`` bytes and ``entry_count`` records."""
    return st.one_of(byte_flips(size), truncations(size), record_table_edits(entry_count))


# ---------------------------------------------------------------------------------------
# Archive record names
# ---------------------------------------------------------------------------------------

_NAME_SEGMENTS = st.sampled_from(["package", "a", "b.py", ".data", "0.storage", "...", ".x", "", ".", "..", "C:", "a:b"])
_NAME_ODDITIES = st.sampled_from(["", "/", "\\", "\0", "\n", ":", "."])


@st.composite
def record_names(draw) -> str:
    """A record name: path segments (empty, ".", ".." and drive letters among them), now and
    then a leading or trailing "/", and characters no safe name holds spliced in."""
    name = "/".join(draw(st.lists(_NAME_SEGMENTS, min_size=1, max_size=4)))
    if draw(st.booleans()):
        position = draw(st.integers(0, len(name)))
        name = name[:position] + draw(_NAME_ODDITIES) + name[position:]
    return name


record_name_lists = st.lists(record_names(), max_size=6)
"""Names of the records of one archive, in directory order."""
