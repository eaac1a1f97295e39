"""torchpack against torch.package on the same workloads, in one run.

How to run (from the repository root; needs networkx, sympy and mpmath installed)::

    python benchmarks/bench.py                       # everything, 3 repetitions (~5 minutes)
    python benchmarks/bench.py --quick               # small sizes, 1 repetition: a smoke test
    python benchmarks/bench.py --only model_1gib --only tiny --repeat 5 --json results.json

Workloads (``--only`` takes these names): model_1gib, many_tensors, networkx, sympy,
weights_1gib and tensors_20k (see benchmarks/workloads.py; the last two also run torch.save
with ``torch.load(mmap=True, weights_only=True)``, safetensors' ``save_file``/``load_file``
and a raw write of the same bytes; safetensors comes with the ``bench`` extra), tiny (export + import of a small MLP to/from memory, in process,
after a first run) and limits (what this machine can do at best: page-cache write,
CRC-32 (zlib's and ISA-L's), SHA-256, BLAKE3 and mmap+sum throughput).

How it measures:

* Every export and every load runs in a fresh Python process; only the step itself is
  timed (not interpreter start-up, imports, or building the model). Figures are medians of
  ``--repeat`` runs; torch.package and torchpack runs alternate, so load on the machine hits
  both alike.
* torchpack keeps on-disk caches (parsed imports, compiled code) in ``TORCHPACK_CACHE_DIR``;
  one new cache directory serves the whole run. Workloads that read sources (networkx,
  sympy) get one extra, uncounted first torchpack run while the cache holds nothing of
  theirs: that run is reported as the cold figure, and the medians are warm. Archives are
  read right after they were written, so the page cache is hot; every export writes a new
  file (an old archive is deleted first, untimed).
* Every step starts with no dirty pages: the driver calls ``sync()`` (untimed) before it
  starts a step's process, so no step shares the machine with the writeback of the
  gigabyte a previous step (or a copy) wrote.
* torchpack checks each record's BLAKE3 digest when first used, mapped tensors included
  (``integrity="on-use"``, the default), and remembers the check of large records per file
  identity; an export remembers every record it has just written, since it hashed those
  very bytes. The loads of the 1 GiB model and of the 20,000 tensors are therefore also
  measured on a copy of the archive (a new file nothing is remembered of, as one downloaded
  would be: every record it uses is hashed); the 1 GiB load also a second time on the copy
  in a new process (the check of its large records remembered), and with
  ``integrity="trust-mapped"``, which never hashes mapped records.
* Peak memory of the 1 GiB export: the RSS high-water mark (``ru_maxrss``) of the export
  process when the export is done, minus the resident size (VmRSS) just before the model was
  built, divided by the model's size. As everything allocated before the export counts in
  the mark, this is an upper bound on model + export; it must stay below 1.2 (no copy).

The output is markdown, ready to paste into the README.
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import json
import mmap
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import zlib
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
IMPLS = ("torch.package", "torchpack")
#: torchpack checks each record's digest when it is first used - mapped tensors too, which
#: reads all of them. Trusting mapped records (an archive checked before) only maps them.
TRUSTED_LOAD = {"integrity": "trust-mapped"}
#: Workloads whose load is also measured on a copy of the archive (see the module docstring).
COPY_LOADED = frozenset({"model_1gib", "many_tensors"})
#: The rows of the peer table: (step, label). The loads of the copy are torchpack's alone;
#: their rows repeat the other tools' load of the file just written.
PEER_STEPS = (("save", "save"), ("load", "load (file just written)"),
              ("copy", "load of a copy (never seen: hashed on use)"),
              ("copy again", "load the copy again (check remembered)"),
              ("trusted", "load the copy, integrity='trust-mapped'"))
TORCHPACK_ONLY_STEPS = frozenset({"copy", "copy again", "trusted"})


# -- what runs in the child processes -----------------------------------------------------


def _import_impl(name: str) -> Any:
    import warnings

    warnings.simplefilter("ignore")  # torch.package's deprecation notices are not results
    if name == "torch.package":
        import torch.package as impl
    else:
        import torchpack as impl
    # torchpack imports its parts on first use; that import is not part of a timed step.
    impl.PackageExporter, impl.PackageImporter  # noqa: B018
    return impl


def _resident_bytes() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _child_export(task: dict[str, Any]) -> dict[str, Any]:
    from workloads import WORKLOADS

    impl = _import_impl(task["impl"])
    workload = WORKLOADS[task["workload"]]
    before_build = _resident_bytes()
    obj = workload.build(task["quick"])
    start = time.perf_counter()
    workload.export(impl, task["path"], obj)
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux
    return {"seconds": seconds, "peak_minus_before_build": peak - before_build, "size": os.path.getsize(task["path"])}


def _child_load(task: dict[str, Any]) -> dict[str, Any]:
    from workloads import WORKLOADS

    impl = _import_impl(task["impl"])
    workload = WORKLOADS[task["workload"]]
    start = time.perf_counter()
    workload.load(impl, task["path"], **task.get("importer_options", {}))
    return {"seconds": time.perf_counter() - start}


def _child_peer_export(task: dict[str, Any]) -> dict[str, Any]:
    from workloads import TENSOR_WORKLOADS, save_tensors

    impl = _import_impl(task["impl"]) if task["impl"] in IMPLS else None
    tensors = TENSOR_WORKLOADS[task["workload"]].build(task["quick"])
    start = time.perf_counter()
    save_tensors(task["impl"], impl, task["path"], tensors)
    return {"seconds": time.perf_counter() - start}


def _child_peer_load(task: dict[str, Any]) -> dict[str, Any]:
    from workloads import load_tensors

    impl = _import_impl(task["impl"]) if task["impl"] in IMPLS else None
    if task["impl"] == "safetensors":
        import safetensors.torch  # noqa: F401 - its import is not part of the load
    elif task["impl"] == "raw write":
        import blake3  # noqa: F401
    start = time.perf_counter()
    load_tensors(task["impl"], impl, task["path"], **task.get("importer_options", {}))
    return {"seconds": time.perf_counter() - start}


def _child_tiny(task: dict[str, Any]) -> dict[str, Any]:
    from workloads import build_tiny_mlp, tiny_round_trip

    impl = _import_impl(task["impl"])
    model = build_tiny_mlp()
    tiny_round_trip(impl, model)  # the first run: imports, caches
    times = []
    for _ in range(20 if task["quick"] else 100):
        start = time.perf_counter()
        tiny_round_trip(impl, model)
        times.append(time.perf_counter() - start)
    return {"seconds": statistics.median(times)}


def _child_limits(task: dict[str, Any]) -> dict[str, Any]:
    import blake3
    import torch
    from isal import isal_zlib

    size = (256 if task["quick"] else 1024) << 20
    chunk = bytearray(os.urandom(1 << 20)) * 16  # written 16 MiB at a time, as a streaming writer would
    path = os.path.join(task["dir"], "limits.bin")
    start = time.perf_counter()
    with open(path, "wb") as handle:
        for _ in range(size // len(chunk)):
            handle.write(chunk)
    write = size / (time.perf_counter() - start)
    data = memoryview(chunk)
    rounds = size // len(chunk)
    start = time.perf_counter()
    for _ in range(rounds):
        zlib.crc32(data)
    crc = size / (time.perf_counter() - start)
    start = time.perf_counter()
    for _ in range(rounds):
        isal_zlib.crc32(data)
    isal_crc = size / (time.perf_counter() - start)
    start = time.perf_counter()
    for _ in range(rounds):
        hashlib.sha256(data).digest()
    sha = size / (time.perf_counter() - start)
    start = time.perf_counter()
    for _ in range(rounds):
        blake3.blake3(data).digest()
    blake = size / (time.perf_counter() - start)
    start = time.perf_counter()
    for _ in range(rounds):
        blake3.blake3(data, max_threads=blake3.blake3.AUTO).digest()
    blake_threads = size / (time.perf_counter() - start)
    start = time.perf_counter()
    with open(path, "rb") as handle:
        mapping = mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_COPY)
    float(torch.frombuffer(mapping, dtype=torch.float32).sum())
    mapped_sum = size / (time.perf_counter() - start)
    os.unlink(path)
    return {"write": write, "crc32": crc, "isal_crc32": isal_crc, "sha256": sha, "blake3": blake, "blake3_threads": blake_threads,
            "mmap_sum": mapped_sum, "size": size}


CHILD_STEPS = {"export": _child_export, "load": _child_load, "tiny": _child_tiny, "limits": _child_limits,
               "peer_export": _child_peer_export, "peer_load": _child_peer_load}


def _child_main(encoded: str) -> None:
    sys.path.insert(0, str(HERE))
    task = json.loads(encoded)
    try:
        result = CHILD_STEPS[task["step"]](task)
    except Exception as error:  # noqa: BLE001 - a failing step is a result (torch.package + sympy)
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else ""
        result = {"error": f"{type(error).__name__}: {first_line[:200]}"}
    print(json.dumps(result))


# -- the driver ----------------------------------------------------------------------------


#: Steps that write ``task["path"]``: each writes a new file (see _same_start).
WRITING_STEPS = frozenset({"export", "peer_export"})


def _same_start(task: dict[str, Any]) -> None:
    """Give every step the same disk state: no old output, no dirty pages (untimed).

    A 1 GiB step that starts while the previous step's gigabyte (or the 1 GiB copy made for
    a never-seen load) is still being written back shares both cores with that writeback,
    and on this project's VM the order of the tools decided who paid for whose. A step that
    writes removes its old output first - replacing a file would add the cost of freeing its
    pages, which truncating and renaming writers pay differently - and ``sync()`` then waits
    until every dirty page is on disk (and a deleted file's blocks are released).
    """
    if task.get("step") in WRITING_STEPS and os.path.exists(task["path"]):
        os.unlink(task["path"])
    os.sync()


def run_child(task: dict[str, Any], cache_dir: str) -> dict[str, Any]:
    _same_start(task)
    env = dict(os.environ, TORCHPACK_CACHE_DIR=cache_dir)
    done = subprocess.run(
        [sys.executable, str(Path(__file__).resolve()), "--child", json.dumps(task)],
        env=env, capture_output=True, text=True, check=False,
    )
    lines = done.stdout.strip().splitlines()
    if done.returncode != 0 or not lines:
        last_line = done.stderr.strip().splitlines()[-1:] or [""]
        return {"error": f"exit {done.returncode}: {last_line[0][-200:]}"}
    return json.loads(lines[-1])


def _median(results: list[dict[str, Any]]) -> float | None:
    times = [r["seconds"] for r in results if "error" not in r]
    return statistics.median(times) if len(times) == len(results) and times else None


class Runner:
    def __init__(self, args: argparse.Namespace, workdir: str) -> None:
        self.args = args
        self.workdir = workdir
        self.cache_dir = os.path.join(workdir, "cache")
        self.rows: list[dict[str, Any]] = []
        self.cold: list[dict[str, Any]] = []
        self.memory: dict[str, Any] | None = None
        self.limits: dict[str, Any] | None = None
        self.peer_rows: list[dict[str, Any]] = []
        self.never_seen_bounds: list[dict[str, Any]] = []

    def log(self, message: str) -> None:
        print(message, file=sys.stderr, flush=True)

    def task(self, step: str, impl: str, workload: str) -> dict[str, Any]:
        path = os.path.join(self.workdir, f"{workload}-{impl}.pt")
        return {"step": step, "impl": impl, "workload": workload, "path": path, "quick": self.args.quick}

    def run_workload(self, name: str) -> None:
        from workloads import WORKLOADS

        workload = WORKLOADS[name]
        results: dict[tuple[str, str], list[dict[str, Any]]] = {}
        if workload.uses_sources:
            # An empty cache, which the warm runs below then reuse.
            self.log(f"{name}: torchpack, cold caches")
            export = run_child(self.task("export", "torchpack", name), self.cache_dir)
            load = run_child(self.task("load", "torchpack", name), self.cache_dir)
            self.cold.append({"workload": name, "export": export, "load": load})
        trusted = TRUSTED_LOAD if name == "model_1gib" else None
        copied = name in COPY_LOADED
        for repetition in range(self.args.repeat):
            for impl in IMPLS:
                self.log(f"{name}: {impl}, run {repetition + 1}/{self.args.repeat}")
                for step in ("export", "load"):
                    result = run_child(self.task(step, impl, name), self.cache_dir)
                    results.setdefault((impl, step), []).append(result)
                if copied and impl == "torchpack":
                    # A copy is a file nothing is remembered of: its first load hashes it all.
                    # Loaded again in a new process, the check of its large mapped records is
                    # remembered (file identity unchanged), not repeated.
                    load_task = self.task("load", impl, name)
                    copy = dict(load_task, path=load_task["path"] + ".copy")
                    if os.path.exists(copy["path"]):
                        os.unlink(copy["path"])
                    shutil.copyfile(load_task["path"], copy["path"])
                    results.setdefault((impl, "copy"), []).append(run_child(copy, self.cache_dir))
                    if trusted:
                        results.setdefault((impl, "reload"), []).append(run_child(copy, self.cache_dir))
                        task = dict(load_task, importer_options=trusted)
                        results.setdefault((impl, "trusted"), []).append(run_child(task, self.cache_dir))
        for step in ("export", "load"):
            label = "load (first load, right after the export)" if copied and step == "load" else step
            self.rows.append(self._row(name, label, results[("torch.package", step)], results[("torchpack", step)],
                                       workload.export_target if step == "export" else workload.load_target))
        if copied:
            self.rows.append(self._row(name, "load of a copy (nothing remembered: hashes what it uses)",
                                       results[("torch.package", "load")], results[("torchpack", "copy")],
                                       workload.load_target))
        if trusted:
            self.rows.append(self._row(name, "load the copy again (digest check remembered)", results[("torch.package", "load")],
                                       results[("torchpack", "reload")], workload.load_target))
            self.rows.append(self._row(name, "load, integrity='trust-mapped'", results[("torch.package", "load")],
                                       results[("torchpack", "trusted")], workload.load_target))
        if name == "model_1gib":
            exports = [r for r in results[("torchpack", "export")] if "error" not in r]
            if exports:
                from workloads import model_width

                model_bytes = 4 * (model_width(self.args.quick) ** 2 + model_width(self.args.quick)) * 4
                peak = max(r["peak_minus_before_build"] for r in exports)
                export_seconds = _median(results[("torchpack", "export")])
                self.memory = {
                    "model_bytes": model_bytes,
                    "peak_bytes": peak,
                    "ratio": peak / model_bytes,
                    "archive_bytes": exports[0]["size"],
                    "export_gb_per_s": exports[0]["size"] / export_seconds / 1e9 if export_seconds else None,
                }

    def run_peers(self, name: str) -> None:
        """Every tool of PEER_TOOLS on the same tensors, the order rotating between runs."""
        from workloads import PEER_TOOLS

        results: dict[tuple[str, str], list[dict[str, Any]]] = {}
        for repetition in range(self.args.repeat):
            shift = repetition % len(PEER_TOOLS)
            for tool in PEER_TOOLS[shift:] + PEER_TOOLS[:shift]:
                self.log(f"{name}: {tool}, run {repetition + 1}/{self.args.repeat}")
                task = self.task("peer_export", tool, name)
                results.setdefault((tool, "save"), []).append(run_child(task, self.cache_dir))
                load = dict(task, step="peer_load")
                results.setdefault((tool, "load"), []).append(run_child(load, self.cache_dir))
            self._load_copies(name, results)
        for step, label in PEER_STEPS:
            self.peer_rows.append({"workload": name, "step": label, **{
                tool: _spread(results[(tool, "load" if step in TORCHPACK_ONLY_STEPS and tool != "torchpack" else step)])
                for tool in PEER_TOOLS}})
        # Issue 17's bound for the never-seen 1 GiB load: hashing the file on every core plus
        # torch.load(mmap=True) of the same tensors, i.e. hashing the only extra.
        never_seen, hashing, torch_load = (_median(results.get(key, [])) for key in
                                           (("torchpack", "copy"), ("bound", "blake3"), ("bound", "torch.load")))
        if never_seen and hashing and torch_load:
            self.never_seen_bounds.append({"workload": name, "torchpack": never_seen, "hashing": hashing,
                                           "torch_load": torch_load, "ratio": never_seen / (hashing + torch_load)})

    def _load_copies(self, name: str, results: dict[tuple[str, str], list[dict[str, Any]]]) -> None:
        """torchpack's loads of a copy of its archive: a file nothing is remembered of, every
        record hashed on use; then the same copy in a new process (the check of its large
        records remembered) and with integrity="trust-mapped" (mapped records never hashed).

        For the 1 GiB tensors, also the never-seen load's bound on files in the same state:
        BLAKE3 of that very copy, and torch.load of a copy of torch.save's file made the same
        way. How a file came to be cached decides what touching its pages costs: one written
        with large writes sits in large folios (about 700 minor faults per GiB mapped here),
        one made by ``shutil.copyfile`` in 4 KiB pages (16,400 faults, about 80 ms).
        """
        tool_task = self.task("peer_export", "torchpack", name)
        copy = dict(tool_task, step="peer_load", path=tool_task["path"] + ".copy")
        shutil.copyfile(tool_task["path"], copy["path"])
        runs = [(("torchpack", step), dict(copy, importer_options=options))
                for step, options in (("copy", {}), ("copy again", {}), ("trusted", TRUSTED_LOAD))]
        copies = [copy["path"]]
        if name == "weights_1gib":
            peer = self.task("peer_export", "torch.save", name)
            peer_copy = dict(peer, step="peer_load", path=peer["path"] + ".copy")
            shutil.copyfile(peer["path"], peer_copy["path"])
            copies.append(peer_copy["path"])
            # The bound's steps go first: the copy's first load must be the never-seen one,
            # and hashing the copy beforehand changes nothing a later load could notice.
            runs[:0] = [(("bound", "blake3"), dict(copy, impl="raw write")), (("bound", "torch.load"), peer_copy)]
        for key, run in runs:
            results.setdefault(key, []).append(run_child(run, self.cache_dir))
        for path in copies:
            os.unlink(path)

    def run_tiny(self) -> None:
        results: dict[str, list[dict[str, Any]]] = {impl: [] for impl in IMPLS}
        for repetition in range(self.args.repeat):
            for impl in IMPLS:
                self.log(f"tiny: {impl}, run {repetition + 1}/{self.args.repeat}")
                results[impl].append(run_child(self.task("tiny", impl, "tiny"), self.cache_dir))
        self.rows.append(self._row("tiny", "export + load", results["torch.package"], results["torchpack"], 1.0))

    def run_limits(self) -> None:
        self.log("limits")
        self.limits = run_child({"step": "limits", "dir": self.workdir, "quick": self.args.quick}, self.cache_dir)

    @staticmethod
    def _row(name: str, step: str, theirs: list[dict], ours: list[dict], target: float | None) -> dict[str, Any]:
        theirs_s, ours_s = _median(theirs), _median(ours)
        ratio = ours_s / theirs_s if theirs_s and ours_s else None
        if ours_s is None:
            met = False
        elif theirs_s is None:
            met = True  # torch.package fails here; the target is that torchpack works
        else:
            met = target is None or ratio <= target  # type: ignore[operator]
        errors = {impl: r["error"] for impl, runs in (("torch.package", theirs), ("torchpack", ours))
                  for r in runs if "error" in r}
        return {"workload": name, "step": step, "torch.package": theirs_s, "torchpack": ours_s,
                "ratio": ratio, "target": target, "met": met, "errors": errors}


def _spread(results: list[dict[str, Any]]) -> dict[str, Any]:
    """Median, fastest and slowest run, or the first error."""
    errors = [r["error"] for r in results if "error" in r]
    if errors:
        return {"error": errors[0]}
    times = [r["seconds"] for r in results]
    return {"median": statistics.median(times), "min": min(times), "max": max(times)}


def _seconds(value: float | None) -> str:
    if value is None:
        return "fails"
    return f"{value * 1000:.1f} ms" if value < 0.1 else f"{value:.3f} s"


def _timed(spread: dict[str, Any]) -> str:
    if "error" in spread:
        return f"fails ({spread['error'][:60]})"
    return f"{_seconds(spread['median'])} ({_seconds(spread['min'])}-{_seconds(spread['max'])})"


def _ratio(ratio: float) -> str:
    speed = f"{1 / ratio:.1f}x faster" if ratio <= 1 else f"{ratio:.1f}x slower"
    return f"{ratio:.3f} ({speed})"


def _target(row: dict[str, Any]) -> str:
    if row["torch.package"] is None:
        return "works"
    target = row["target"]
    if target is None:
        return "-"
    return "<= 1x" if target == 1 else f"<= 1/{round(1 / target)}"


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def report(runner: Runner) -> str:
    import torch

    args = runner.args
    lines = [
        f"Benchmark of {datetime.date.today().isoformat()}: {_cpu_name()}, {os.cpu_count()} cores, "
        f"Python {platform.python_version()}, torch {torch.__version__}; "
        f"median of {args.repeat} run(s), each step in a fresh process, warm torchpack caches, hot page cache"
        + (" (--quick: small sizes, targets not meaningful)" if args.quick else "") + ".",
        "",
    ]
    if runner.rows:
        lines += ["| workload | step | torch.package | torchpack | torchpack / torch.package | target | met |",
                  "|---|---|---|---|---|---|---|"]
        for row in runner.rows:
            ratio = "-" if row["ratio"] is None else _ratio(row["ratio"])
            lines.append(f"| {row['workload']} | {row['step']} | {_seconds(row['torch.package'])} | "
                         f"{_seconds(row['torchpack'])} | {ratio} | {_target(row)} | "
                         f"{'yes' if row['met'] else '**no**'} |")
        lines.append("")
        for row in runner.rows:
            for impl, error in row["errors"].items():
                lines.append(f"- {row['workload']} {row['step']} with {impl} fails: `{error}`")
        lines.append("")
    if runner.peer_rows:
        from workloads import PEER_TOOLS

        peers = [tool for tool in PEER_TOOLS if tool != "torchpack"]
        lines += ["torchpack against the formats users pick instead, same tensors, same run: median "
                  "(fastest-slowest). Load = open + sum of every tensor; the floor is a raw write of the "
                  "tensors' bytes, and BLAKE3 of that file on every core as its load. The rows of the copy's loads repeat "
                  "the peers' load of the file just written.",
                  "", "| workload | step | torchpack | " + " | ".join(peers) + " | "
                  + " | ".join(f"torchpack / {tool}" for tool in peers) + " |",
                  "|---" * (3 + 2 * len(peers)) + "|"]
        for row in runner.peer_rows:
            ours = row["torchpack"].get("median")
            cells = [_timed(row["torchpack"])] + [_timed(row[tool]) for tool in peers]
            ratios = [f"{ours / row[tool]['median']:.2f}" if ours and row[tool].get("median") else "-" for tool in peers]
            lines.append(f"| {row['workload']} | {row['step']} | " + " | ".join(cells + ratios) + " |")
        lines.append("")
        for bound in runner.never_seen_bounds:
            lines.append(f"- {bound['workload']}, load of a copy: {_seconds(bound['torchpack'])} against BLAKE3 of that copy on "
                         f"every core {_seconds(bound['hashing'])} + torch.load(mmap=True) of a copy of its file "
                         f"{_seconds(bound['torch_load'])}: "
                         f"{bound['ratio']:.2f}x (target <= 1.2x)")
        lines.append("")
    if runner.cold:
        lines += ["torchpack with cold caches (the first run, on an empty `TORCHPACK_CACHE_DIR`):",
                  "", "| workload | export | load |", "|---|---|---|"]
        for cold in runner.cold:
            cells = [_seconds(cold[s].get("seconds")) for s in ("export", "load")]
            lines.append(f"| {cold['workload']} | {cells[0]} | {cells[1]} |")
        lines.append("")
    if runner.memory:
        memory = runner.memory
        speed = memory["export_gb_per_s"]
        lines += [
            f"Peak memory of the model export (torchpack): {memory['peak_bytes'] / 2**20:.0f} MiB above the "
            f"process before the model was built, for a {memory['model_bytes'] / 2**20:.0f} MiB model: "
            f"{memory['ratio']:.2f} x the model (target < 1.2: {'yes' if memory['ratio'] < 1.2 else '**no**'}). "
            f"Export throughput: {speed:.2f} GB/s (stretch goal 2.5 GB/s).",
            "",
        ]
    if runner.limits:
        limits = runner.limits
        if "error" in limits:
            lines.append(f"Machine limits: failed ({limits['error']})")
        else:
            lines += ["Machine limits, for reference:", "", "| operation | GB/s |", "|---|---|"]
            lines.append(f"| write {limits['size'] >> 20} MiB to a new file in /tmp (page cache) | {limits['write'] / 1e9:.2f} |")
            lines.append(f"| zlib.crc32 | {limits['crc32'] / 1e9:.2f} |")
            lines.append(f"| isal.isal_zlib.crc32 (torchpack's CRC-32) | {limits['isal_crc32'] / 1e9:.2f} |")
            lines.append(f"| hashlib.sha256 | {limits['sha256'] / 1e9:.2f} |")
            lines.append(f"| blake3, one thread (the export's digest) | {limits['blake3'] / 1e9:.2f} |")
            lines.append(f"| blake3, every core (a large record's check on load) | {limits['blake3_threads'] / 1e9:.2f} |")
            lines.append(f"| mmap the file + torch sum (first read) | {limits['mmap_sum'] / 1e9:.2f} |")
        lines.append("")
    return "\n".join(lines)


def main() -> None:
    from workloads import TENSOR_WORKLOADS, WORKLOADS

    choices = [*WORKLOADS, *TENSOR_WORKLOADS, "tiny", "limits"]
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=None, help="runs per step (default 3, 1 with --quick)")
    parser.add_argument("--quick", action="store_true", help="small sizes and one run: a smoke test")
    parser.add_argument("--only", action="append", choices=choices, help="run only this workload (repeatable)")
    parser.add_argument("--json", metavar="FILE", help="also save the results as JSON")
    args = parser.parse_args()
    if args.repeat is None:
        args.repeat = 1 if args.quick else 3
    selected = args.only or choices
    with tempfile.TemporaryDirectory(prefix="torchpack-bench-") as workdir:
        runner = Runner(args, workdir)
        for name in selected:
            if name == "tiny":
                runner.run_tiny()
            elif name == "limits":
                runner.run_limits()
            elif name in TENSOR_WORKLOADS:
                runner.run_peers(name)
            else:
                runner.run_workload(name)
        text = report(runner)
    print(text)
    if args.json:
        Path(args.json).write_text(json.dumps(
            {"date": datetime.date.today().isoformat(), "quick": args.quick, "repeat": args.repeat,
             "rows": runner.rows, "peers": runner.peer_rows, "never_seen_bounds": runner.never_seen_bounds, "cold": runner.cold, "memory": runner.memory, "limits": runner.limits},
            indent=1) + "\n")


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--child":
        _child_main(sys.argv[2])
    else:
        sys.path.insert(0, str(HERE))
        main()
