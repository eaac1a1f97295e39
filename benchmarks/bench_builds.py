"""Builds at scale: ``python -m torchpack.build //...`` on a generated workspace of 100 targets.

How to run (from the repository root)::

    python benchmarks/bench_builds.py                 # 100 targets, torchpack only (~5 minutes on 2 cores)
    python benchmarks/bench_builds.py --targets 10    # a smoke test

The workspace (in a temporary folder): a package ``bw.shared`` whose module ``common`` the
code of the first ``--shared`` targets imports (25 by default), and targets ``bw.tNNN``, each
pickling one small object made by its own code. The last ``--composed`` targets (10) each
depend on one of the shared targets' archives and re-export its object next to their own.
So ``bw/shared/common.py`` has ``shared + composed`` dependents and the other targets none.

Measured, one build each, every build a fresh ``python -m torchpack.build //...`` process:

* a cold build with ``--jobs 1`` and one with ``--jobs 2``, each into a new ``--out``
  folder (no action cache);
* a no-op rebuild (everything cached);
* a rebuild after an edit of ``bw/shared/common.py`` (a comment added: new content, so new
  archive bytes for its importers): the targets reported ``built`` must be exactly its
  dependents.

Not yet here: the same workspace built cold by Bazel through rules/ (issue 17 asks for the
comparison; wiring the workspace as tests/test_bazel.py does is left to do).

The output is markdown, ready to paste into the README.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]

SHARED_MODULE = '''"""Helpers every shared target's code imports."""


def normalize(values):
    total = sum(values) or 1.0
    return [value / total for value in values]
'''

OWN_MODEL = '''"""Target {index}: a small object made by its own code."""


class Model{index}:
    def __init__(self, values):
        self.values = values


def build():
    return Model{index}([float(i) for i in range({index} % 7 + 3)])
'''

SHARED_MODEL = '''"""Target {index}: a small object made with the shared helpers."""

from bw.shared.common import normalize


class Model{index}:
    def __init__(self, values):
        self.values = normalize(values)


def build():
    return Model{index}([float(i) for i in range({index} % 7 + 3)])
'''

COMPOSED_MODEL = '''"""Target {index}: wraps the object of another target's archive."""


class Wrapper{index}:
    def __init__(self, inner):
        self.inner = inner


def build(inner):
    return Wrapper{index}(inner)
'''


def _name(index: int) -> str:
    return f"t{index:03d}"


def write_workspace(root: Path, targets: int, shared: int, composed: int) -> dict[str, set[str]]:
    """Writes the workspace; returns, per target label, the labels of targets it depends on."""
    (root / "WORKSPACE").write_text("")
    (root / "bw").mkdir()
    (root / "bw" / "__init__.py").write_text("")
    (root / "bw" / "shared").mkdir()
    (root / "bw" / "shared" / "__init__.py").write_text("")
    (root / "bw" / "shared" / "common.py").write_text(SHARED_MODULE)
    deps: dict[str, set[str]] = {}
    for index in range(targets):
        name = _name(index)
        folder = root / "bw" / name
        folder.mkdir()
        (folder / "__init__.py").write_text("")
        label = f"//bw/{name}:{name}"
        intern = ["bw", f"bw.{name}.**"]
        lines = []
        if index >= targets - composed:
            base = _name(index % shared)
            deps[label] = {f"//bw/{base}:{base}"}
            (folder / "model.py").write_text(COMPOSED_MODEL.format(index=index))
            intern += [f"bw.{base}.**", "bw.shared.**"]
            lines += [f'deps = ["//bw/{base}"]']
            pickle = [f'[{name}.pickle."{name}/model.pkl"]', f'call = "bw.{name}.model:build"',
                      f'dep_args = {{ inner = {{ from = "//bw/{base}", record = "{base}/model.pkl" }} }}']
        else:
            deps[label] = set()
            uses_shared = index < shared
            (folder / "model.py").write_text((SHARED_MODEL if uses_shared else OWN_MODEL).format(index=index))
            if uses_shared:
                intern.append("bw.shared.**")
            pickle = [f'[{name}.pickle."{name}/model.pkl"]', f'call = "bw.{name}.model:build"']
        head = [f"[{name}]", "intern = [" + ", ".join(f'"{glob}"' for glob in intern) + "]", *lines, ""]
        (folder / "BUILD.toml").write_text("\n".join(head + pickle) + "\n")
    return deps


def torchpack_build(root: Path, out: Path, jobs: int) -> dict[str, Any]:
    start = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "torchpack.build", "//...", "--jobs", str(jobs), "--out", str(out), "--json"],
        cwd=root, capture_output=True, text=True, check=False,
        env=dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))),
    )
    seconds = time.perf_counter() - start
    try:
        targets = json.loads(done.stdout)["targets"]
    except (json.JSONDecodeError, KeyError):
        raise SystemExit(f"build failed (exit {done.returncode}):\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}") from None
    if done.returncode != 0:
        failed = [t for t in targets if t["state"] == "failed"]
        raise SystemExit(f"build failed (exit {done.returncode}): {failed[:2]}\n{done.stderr[-2000:]}")
    built = sorted(t["label"] for t in targets if t["state"] == "built")
    return {"seconds": seconds, "built": built, "total": len(targets)}


def dependents_of_shared(deps: dict[str, set[str]], root: Path) -> set[str]:
    """Targets whose code imports bw.shared, and everything depending on their archives."""
    affected = {label for label in deps
                if "bw.shared.common" in (root / "bw" / label.split(":")[1] / "model.py").read_text()}
    grown = True
    while grown:
        more = {label for label, needs in deps.items() if needs & affected} - affected
        affected |= more
        grown = bool(more)
    return affected


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--targets", type=int, default=100)
    parser.add_argument("--shared", type=int, default=25, help="targets whose code imports bw.shared.common")
    parser.add_argument("--composed", type=int, default=10, help="targets depending on a shared target's archive")
    parser.add_argument("--json", metavar="FILE", help="also save the results as JSON")
    args = parser.parse_args()
    if args.shared + args.composed > args.targets:
        parser.error("--shared + --composed must not exceed --targets")
    results: dict[str, Any] = {"targets": args.targets}
    with tempfile.TemporaryDirectory(prefix="torchpack-bench-builds-") as temp:
        root = Path(temp) / "ws"
        root.mkdir()
        deps = write_workspace(root, args.targets, args.shared, args.composed)
        for jobs in (1, 2):
            out = Path(temp) / f"out-jobs{jobs}"
            print(f"cold build, --jobs {jobs}", file=sys.stderr, flush=True)
            results[f"cold_jobs{jobs}"] = torchpack_build(root, out, jobs)
        print("no-op rebuild", file=sys.stderr, flush=True)
        results["noop"] = torchpack_build(root, out, 2)
        common = root / "bw" / "shared" / "common.py"
        common.write_text(common.read_text() + "# edited\n")
        print("rebuild after editing bw/shared/common.py", file=sys.stderr, flush=True)
        results["touched"] = torchpack_build(root, out, 2)
        expected = dependents_of_shared(deps, root)
        results["expected_rebuilt"] = sorted(expected)
    print(report(results))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1) + "\n")


def report(results: dict[str, Any]) -> str:
    one, two = results["cold_jobs1"]["seconds"], results["cold_jobs2"]["seconds"]
    noop, touched = results["noop"], results["touched"]
    expected = set(results["expected_rebuilt"])
    rebuilt = set(touched["built"])
    lines = [
        f"Builds of a generated workspace of {results['targets']} targets "
        f"({len(expected)} depend on bw/shared/common.py), {os.cpu_count()} cores:",
        "",
        "| build | wall time | built | target | met |",
        "|---|---|---|---|---|",
        f"| cold, `--jobs 1` | {one:.1f} s | {len(results['cold_jobs1']['built'])} | - | - |",
        f"| cold, `--jobs 2` | {two:.1f} s ({one / two:.2f}x `--jobs 1`) | {len(results['cold_jobs2']['built'])} "
        f"| >= 1.6x `--jobs 1` | {'yes' if one / two >= 1.6 else '**no**'} |",
        f"| no-op rebuild | {noop['seconds']:.2f} s | {len(noop['built'])} | <= 1 s | "
        f"{'yes' if noop['seconds'] <= 1 and not noop['built'] else '**no**'} |",
        f"| after editing bw/shared/common.py | {touched['seconds']:.1f} s | {len(rebuilt)} of "
        f"{len(expected)} dependents | exactly its dependents | {'yes' if rebuilt == expected else '**no**'} |",
    ]
    if rebuilt != expected:
        lines.append(f"\nRebuilt but not dependent: {sorted(rebuilt - expected)}; dependent but cached: "
                     f"{sorted(expected - rebuilt)}")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    main()
