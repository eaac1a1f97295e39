"""Builds at scale: ``python -m torchpack.build //...`` on a generated workspace of 100 targets.

How to run (from the repository root)::

    python benchmarks/bench_builds.py                 # 100 targets, torchpack only
    python benchmarks/bench_builds.py --bazel         # and a cold Bazel build of the same workspace
    python benchmarks/bench_builds.py --targets 10    # a smoke test

The workspace (in a temporary folder): a package ``bw.shared`` whose module ``common`` the
code of the first ``--shared`` targets imports (a quarter by default), and targets ``bw.tNNN``,
each pickling one small object made by its own code. The last ``--composed`` targets (a tenth) each
depend on one of the shared targets' archives and re-export its object next to their own.
So ``bw/shared/common.py`` has ``shared + composed`` dependents and the other targets none.

Measured, one build each, every build a fresh ``python -m torchpack.build //...`` process:

* a cold build with ``--jobs 1`` and one with ``--jobs 2``, each into a new ``--out``
  folder (no action cache);
* a no-op rebuild (everything cached);
* a rebuild after an edit of ``bw/shared/common.py`` (a comment added: new content, so new
  archive bytes for its importers): the targets reported ``built`` must be exactly its
  dependents.

With ``--bazel``, the same workspace is also built cold by Bazel (``bazel-bootstrap`` 4.2,
offline) through this checkout's rules: every target has a ``torch_package`` twin in a
BUILD.bazel (a ``py_library`` of its code in ``srcs``), the workspace reaches the rules with
``local_repository`` as WORKSPACE.example shows, the Python toolchain is this interpreter,
no remote or disk cache is given, and the build gets a fresh output base and ``--jobs``
like the CLI's (the server's start is part of the time; unpacking Bazel's install base,
once per machine, is not). It is built twice, each time from a fresh output base: with the
builder as a persistent worker (Bazel's default for ``TorchPackage`` actions) and with
``--strategy=TorchPackage=sandboxed`` (a fresh interpreter per action). ``--no-zygote`` builds with the CLI's fresh interpreter per export
(as Bazel does), for comparison.

``--targets`` sets the size: use 20-30 targets while other jobs load the machine.

The output is markdown, ready to paste into the README.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
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


BAZEL_WORKSPACE = """workspace(name = "bench_builds")

local_repository(name = "rules_torchpack", path = "{repo}")

load("@rules_torchpack//rules:repositories.bzl", "rules_torchpack_dependencies", "rules_torchpack_toolchains")

rules_torchpack_dependencies()

rules_torchpack_toolchains(interpreter = "{python}")
"""

# The settings of the rules' own repository (.bazelrc): a fixed action environment, no
# sandbox kept on disk.
BAZEL_RC = "build --incompatible_strict_action_env\nbuild --nosandbox_debug\n"

LIBRARY = 'package(default_visibility = ["//visibility:public"])\n\npy_library(name = "{name}", srcs = {srcs}, deps = {deps})\n'


def _bazel_target(name: str, code_deps: list[str], table: dict[str, Any]) -> str:
    """A target's BUILD.bazel: its code as a py_library and the torch_package twin of its table."""
    arguments = "".join(f"    {key} = {json.dumps(value)},\n" for key, value in table.items())
    return (
        'load("@rules_torchpack//rules:defs.bzl", "torch_package")\n\n'
        + LIBRARY.format(name="code", srcs='["__init__.py", "model.py"]', deps=json.dumps(code_deps))
        + f'\ntorch_package(\n    name = "{name}",\n    srcs = [":code"],\n{arguments})\n'
    )


def write_workspace(root: Path, targets: int, shared: int, composed: int) -> dict[str, set[str]]:
    """Writes the workspace (BUILD.toml and BUILD.bazel twins); returns, per target label,
    the labels of targets it depends on."""
    (root / "WORKSPACE").write_text("")
    (root / "WORKSPACE.bazel").write_text(BAZEL_WORKSPACE.format(repo=REPO, python=sys.executable))
    (root / ".bazelrc").write_text(BAZEL_RC)
    (root / ".bazelignore").write_text("torchpack-out\n")
    (root / "bw").mkdir()
    (root / "bw" / "__init__.py").write_text("")
    (root / "bw" / "BUILD.bazel").write_text(LIBRARY.format(name="bw", srcs='["__init__.py"]', deps="[]"))
    (root / "bw" / "shared").mkdir()
    (root / "bw" / "shared" / "__init__.py").write_text("")
    (root / "bw" / "shared" / "common.py").write_text(SHARED_MODULE)
    (root / "bw" / "shared" / "BUILD.bazel").write_text(
        LIBRARY.format(name="shared", srcs='["__init__.py", "common.py"]', deps='["//bw"]')
    )
    deps: dict[str, set[str]] = {}
    for index in range(targets):
        name = _name(index)
        folder = root / "bw" / name
        folder.mkdir()
        (folder / "__init__.py").write_text("")
        label = f"//bw/{name}:{name}"
        intern = ["bw", f"bw.{name}.**"]
        lines = []
        table: dict[str, Any] = {}
        code_deps = ["//bw"]
        record = {"call": f"bw.{name}.model:build"}
        if index >= targets - composed:
            base = _name(index % shared)
            deps[label] = {f"//bw/{base}:{base}"}
            (folder / "model.py").write_text(COMPOSED_MODEL.format(index=index))
            intern += [f"bw.{base}.**", "bw.shared.**"]
            lines += [f'deps = ["//bw/{base}"]']
            table["deps"] = [f"//bw/{base}"]
            record["dep_args"] = {"inner": {"from": f"//bw/{base}", "record": f"{base}/model.pkl"}}
            pickle = [f'[{name}.pickle."{name}/model.pkl"]', f'call = "bw.{name}.model:build"',
                      f'dep_args = {{ inner = {{ from = "//bw/{base}", record = "{base}/model.pkl" }} }}']
        else:
            deps[label] = set()
            uses_shared = index < shared
            (folder / "model.py").write_text((SHARED_MODEL if uses_shared else OWN_MODEL).format(index=index))
            if uses_shared:
                intern.append("bw.shared.**")
                code_deps.append("//bw/shared")
            pickle = [f'[{name}.pickle."{name}/model.pkl"]', f'call = "bw.{name}.model:build"']
        head = [f"[{name}]", "intern = [" + ", ".join(f'"{glob}"' for glob in intern) + "]", *lines, ""]
        (folder / "BUILD.toml").write_text("\n".join(head + pickle) + "\n")
        table.update(intern=intern, pickle={f"{name}/model.pkl": record})
        (folder / "BUILD.bazel").write_text(_bazel_target(name, code_deps, table))
    return deps


def torchpack_build(root: Path, out: Path, jobs: int, zygote: bool = True) -> dict[str, Any]:
    start = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "torchpack.build", "//...", "--jobs", str(jobs), "--out", str(out), "--json",
         *([] if zygote else ["--no-zygote"])],
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
    exports = sorted(t["seconds"] for t in targets if t["state"] == "built")
    median = exports[len(exports) // 2] if exports else 0.0
    return {"seconds": seconds, "built": built, "total": len(targets), "median_export": median}


def _bazel_env() -> dict[str, str]:
    """The caller's environment without Python and Bazel settings; any download attempt goes
    to a proxy nobody listens on (the build is offline by construction)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("BAZEL", "TEST_", "PYTHON", "VIRTUAL_ENV"))}
    for key in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY"):
        env[key] = "http://127.0.0.1:9"
    return env


def bazel_build(root: Path, scratch: Path, jobs: int, strategy: str) -> dict[str, Any]:
    """A cold ``bazel build //...``: a fresh output base, no remote or disk cache, TorchPackage
    actions run by ``strategy`` (``worker``: the persistent worker; ``sandboxed``: one-shot)."""
    binary = shutil.which("bazel")
    if binary is None:
        raise SystemExit("--bazel: bazel is not installed (apt-get install -y bazel-bootstrap)")
    user_root = scratch / "bazel"
    startup = [binary, f"--output_user_root={user_root}", "--nohome_rc", "--max_idle_secs=120"]
    run = dict(cwd=root, env=_bazel_env(), capture_output=True, text=True, check=False)
    # Unpacks the install base (once per machine in real use), then stops the server.
    subprocess.run([*startup, f"--output_base={user_root / 'warmup'}", "version"], **run)
    subprocess.run([*startup, f"--output_base={user_root / 'warmup'}", "shutdown"], **run)
    cold = [*startup, f"--output_base={user_root / ('cold-' + strategy)}"]
    # An earlier build's convenience links lead into its output base, which `//...` would walk.
    for link in root.glob("bazel-*"):
        if link.is_symlink():
            link.unlink()
    start = time.perf_counter()
    done = subprocess.run([*cold, "build", f"--jobs={jobs}", f"--strategy=TorchPackage={strategy}", "--disk_cache=",
                           "--noremote_accept_cached", "//..."], **run)
    seconds = time.perf_counter() - start
    subprocess.run([*cold, "shutdown"], **run)
    if done.returncode != 0:
        raise SystemExit(f"bazel build failed (exit {done.returncode}):\n{done.stderr[-3000:]}")
    archives = sorted(str(p.relative_to(root / "bazel-bin")) for p in (root / "bazel-bin").rglob("*.pt"))
    return {"seconds": seconds, "archives": archives}


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
    parser.add_argument("--shared", type=int, help="targets whose code imports bw.shared.common (default: a quarter)")
    parser.add_argument("--composed", type=int, help="targets depending on a shared target's archive (default: a tenth)")
    parser.add_argument("--jobs", type=int, nargs="+", default=[1, 2], help="the cold builds' --jobs (default: 1 2)")
    parser.add_argument("--no-zygote", action="store_true", help="build with a fresh interpreter per export")
    parser.add_argument("--bazel", action="store_true", help="also build the workspace cold with Bazel")
    parser.add_argument("--json", metavar="FILE", help="also save the results as JSON")
    args = parser.parse_args()
    args.shared = max(1, args.targets // 4) if args.shared is None else args.shared
    args.composed = args.targets // 10 if args.composed is None else args.composed
    if args.shared + args.composed > args.targets:
        parser.error("--shared + --composed must not exceed --targets")
    zygote = not args.no_zygote
    results: dict[str, Any] = {"targets": args.targets, "jobs": args.jobs, "zygote": zygote}
    with tempfile.TemporaryDirectory(prefix="torchpack-bench-builds-") as temp:
        root = Path(temp) / "ws"
        root.mkdir()
        deps = write_workspace(root, args.targets, args.shared, args.composed)
        for jobs in args.jobs:
            out = Path(temp) / f"out-jobs{jobs}"
            print(f"cold build, --jobs {jobs}", file=sys.stderr, flush=True)
            results[f"cold_jobs{jobs}"] = torchpack_build(root, out, jobs, zygote)
        if args.bazel:
            for strategy in ("worker", "sandboxed"):
                print(f"cold Bazel build, --jobs {max(args.jobs)}, {strategy}", file=sys.stderr, flush=True)
                results[f"bazel_{strategy}"] = bazel_build(root, Path(temp), max(args.jobs), strategy)
        print("no-op rebuild", file=sys.stderr, flush=True)
        results["noop"] = torchpack_build(root, out, max(args.jobs), zygote)
        common = root / "bw" / "shared" / "common.py"
        common.write_text(common.read_text() + "# edited\n")
        print("rebuild after editing bw/shared/common.py", file=sys.stderr, flush=True)
        results["touched"] = torchpack_build(root, out, max(args.jobs), zygote)
        expected = dependents_of_shared(deps, root)
        results["expected_rebuilt"] = sorted(expected)
    print(report(results))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1) + "\n")


def report(results: dict[str, Any]) -> str:
    noop, touched = results["noop"], results["touched"]
    expected = set(results["expected_rebuilt"])
    rebuilt = set(touched["built"])
    count = results["targets"]
    engine = "" if results["zygote"] else ", `--no-zygote`"
    lines = [
        f"Builds of a generated workspace of {count} targets "
        f"({len(expected)} depend on bw/shared/common.py), {os.cpu_count()} cores:",
        "",
        "| build | wall time | per target | built | target | met |",
        "|---|---|---|---|---|---|",
    ]
    for jobs in results["jobs"]:
        cold = results[f"cold_jobs{jobs}"]
        speedup, verdict = "", "- | -"
        if jobs != 1 and "cold_jobs1" in results:
            ratio = results["cold_jobs1"]["seconds"] / cold["seconds"]
            speedup = f" ({ratio:.2f}x `--jobs 1`)"
            verdict = f">= 1.6x `--jobs 1` | {'yes' if ratio >= 1.6 else '**no**'}"
        lines.append(
            f"| cold, `--jobs {jobs}`{engine} | {cold['seconds']:.1f} s{speedup} | {cold['seconds'] / count:.2f} s "
            f"(export median {cold['median_export']:.2f} s) | {len(cold['built'])} | {verdict} |"
        )
    for strategy in ("worker", "sandboxed"):
        if f"bazel_{strategy}" in results:
            bazel = results[f"bazel_{strategy}"]
            lines.append(f"| cold, Bazel, `--jobs {max(results['jobs'])} --strategy=TorchPackage={strategy}` "
                         f"| {bazel['seconds']:.1f} s | {bazel['seconds'] / count:.2f} s | {len(bazel['archives'])} | - | - |")
    lines += [
        f"| no-op rebuild | {noop['seconds']:.2f} s | - | {len(noop['built'])} | <= 1 s | "
        f"{'yes' if noop['seconds'] <= 1 and not noop['built'] else '**no**'} |",
        f"| after editing bw/shared/common.py | {touched['seconds']:.1f} s | - | {len(rebuilt)} of "
        f"{len(expected)} dependents | exactly its dependents | {'yes' if rebuilt == expected else '**no**'} |",
    ]
    if rebuilt != expected:
        lines.append(f"\nRebuilt but not dependent: {sorted(rebuilt - expected)}; dependent but cached: "
                     f"{sorted(expected - rebuilt)}")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    main()
