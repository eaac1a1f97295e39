"""Time and peak memory of every ``torchpack`` CLI command over hostile pickle shapes.

How to run (from the repository root)::

    python benchmarks/hostile_cli.py                 # every shape, every command
    python benchmarks/hostile_cli.py --depth 20000   # smaller shapes, a smoke test

Each shape is a hand-written pickle record ``p/x.pkl`` in a torchpack archive (and a second
archive whose pickle differs in one opcode, for ``diff``): nested lists, marks, dicts and
tuples ``--depth`` deep, a list ``--width`` wide, as many memo references, a pair of long
strings, and tuples that double through the memo 60 times (2^60 leaves, no memory).
Each archive also holds a module whose source nests 100,000 deep (``why`` parses it).
Every command runs in its own process under an address-space limit (``--limit-mib``): a
command that needs more fails instead of taking the machine down, and is reported as such.
Figures: wall time, and the child's peak resident memory (``ru_maxrss``).
"""

from __future__ import annotations

import argparse
import os
import struct
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def _binint(value: int) -> bytes:
    return b"J" + struct.pack("<i", value)


def shapes(depth: int, width: int) -> dict[str, bytes]:
    """Pickle bodies (no PROTO, no STOP) by shape name; ``variant`` changes one value."""
    nested_dict = b"}" + (b"K\x00}" * depth) + b"s" * depth
    laughs = b")q\x00" + b"".join(b"h" + bytes([i]) + b"h" + bytes([i]) + b"\x86q" + bytes([i + 1]) for i in range(60))
    return {
        "deep_list": b"]" * depth + b"a" * (depth - 1),
        "deep_mark_list": b"(" * depth + b"l" * depth,
        "deep_tuple": b"(" * depth + b"t" * depth,
        "deep_dict": nested_dict,
        "wide_list": b"](" + b"K\x01" * width + b"e",
        "memo_refs": b"]q\x00(" + b"h\x00" * width + b"e",
        "long_strings": b"(" + b"X" + struct.pack("<I", 50 << 20) + b"a" * (50 << 20) + b"X" + struct.pack("<I", 5) + b"hello" + b"t",
        "laughs": laughs,
    }


def pickle_bytes(body: bytes, variant: int) -> bytes:
    # A trailing pair (value, variant) makes the two archives differ in one opcode only.
    return b"\x80\x02(" + body + _binint(variant) + b"t."


def write_archive(path: Path, pickle_data: bytes) -> None:
    sys.path.insert(0, str(REPO))
    import torchpack

    with torchpack.PackageExporter(str(path)) as exporter:
        exporter.save_source_string("m", "import p_helper\n")
        exporter.save_source_string("p_helper", "X = 1\n")
        exporter.save_binary("p", "x.pkl", pickle_data)
        # A module whose source nests past what Python's parser takes, for `why`'s graph.
        exporter.save_binary("deep", "mod.py", ("x = " + "+".join(["1"] * 100_000) + "\n").encode())


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--depth", type=int, default=100_000)
    parser.add_argument("--width", type=int, default=1_000_000)
    parser.add_argument("--limit-mib", type=int, default=3072)
    parser.add_argument("--timeout", type=float, default=120)
    parser.add_argument("--only", action="append")
    options = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="hostile-cli-"))
    cli = [sys.executable, "-m", "torchpack"]
    print(f"{'shape':16} {'command':8} {'exit':>7} {'seconds':>8} {'peak MiB':>9}  last stderr line")
    for name, body in shapes(options.depth, options.width).items():
        if options.only and name not in options.only:
            continue
        a, b = folder / f"{name}_a.pt", folder / f"{name}_b.pt"
        write_archive(a, pickle_bytes(body, 1))
        write_archive(b, pickle_bytes(body, 2))
        commands = {
            "inspect": [*cli, "inspect", "--json", str(a)],
            "why": [*cli, "why", str(a), "p_helper"],
            "verify": [*cli, "verify", str(a)],
            "diff": [*cli, "diff", str(a), str(b)],
        }
        for command_name, command in commands.items():
            # ru_maxrss of RUSAGE_CHILDREN is the largest child so far: one helper process per run.
            wrapper = [sys.executable, "-c", (
                "import resource, subprocess, sys, time\n"
                f"resource.setrlimit(resource.RLIMIT_AS, ({options.limit_mib << 20}, {options.limit_mib << 20}))\n"
                "start = time.perf_counter()\n"
                f"try:\n    r = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout={options.timeout})\n"
                "    code, err = r.returncode, r.stderr\n"
                "except subprocess.TimeoutExpired as e:\n    code, err = 'timeout', e.stderr or b''\n"
                "t = time.perf_counter() - start\n"
                "peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024\n"
                "last = (err.decode('utf-8', 'replace').strip().splitlines() or [''])[-1][:110]\n"
                "print(f'{code}\\t{t:.2f}\\t{peak:.0f}\\t{last}')\n"
            ), *command]
            env = {**os.environ, "PYTHONPATH": str(REPO), "TORCHPACK_CACHE_DIR": ""}
            out = subprocess.run(wrapper, env=env, capture_output=True, text=True).stdout.strip()
            code, seconds, peak, last = (out.split("\t") + ["", "", "", ""])[:4]
            print(f"{name:16} {command_name:8} {code:>7} {seconds:>8} {peak:>9}  {last}", flush=True)


if __name__ == "__main__":
    main()
