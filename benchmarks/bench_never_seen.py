"""Issue 17 item 3 in one process: the load of a never-seen 1 GiB archive against its bound.

The bound is BLAKE3 of the same bytes on every core plus ``torch.load(mmap=True)`` of the same
tensors. bench.py measures the three in separate processes minutes apart, which on a shared
2-core machine compares loads as much as tools; here one process per round runs all three
back to back, in an order that rotates between rounds, and reports wall and CPU seconds::

    python benchmarks/bench_never_seen.py            # 1 GiB, 3 rounds
    python benchmarks/bench_never_seen.py --quick    # 64 MiB, a smoke test

Each round loads a new copy of the torchpack archive with an empty ``TORCHPACK_CACHE_DIR``:
nothing is remembered, every record is hashed before its tensor is built. BLAKE3 hashes that
same copy, and ``torch.load`` reads a copy of its own file made the same way: how a file came
to be cached decides what touching it costs. On Linux 6.18 a file written with large
``write()`` calls sits in the page cache in large folios, and a mapping of it faults about
700 times per GiB; a copy made by ``shutil.copyfile`` (``copy_file_range``) sits in 4 KiB
pages and faults 16,400 times, which cost about 80 ms here. The copies are made (and
``sync()``-ed) before the round's process starts, so their pages are cached and clean, as in
bench.py. The minor page faults of each step are reported with its times.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
STEPS = ("blake3 all cores", "torch.load mmap + sum", "torchpack never seen + sum")


def _usage() -> tuple[float, int]:
    """CPU seconds and minor page faults of this process so far."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime, usage.ru_minflt


def _round(files: dict[str, str], order: list[str]) -> dict[str, dict[str, float]]:
    """In a fresh process: each step once, in ``order``; wall and CPU seconds and minor faults of each."""
    import warnings

    warnings.simplefilter("ignore")
    import blake3
    import torch  # noqa: F401 - imported before the first timed step

    import torchpack
    from workloads import load_tensors

    torchpack.PackageImporter  # noqa: B018 - its import is not part of a timed step
    steps = {
        "blake3 all cores": lambda: blake3.blake3(max_threads=blake3.blake3.AUTO).update_mmap(files["copy"]).digest(),
        "torch.load mmap + sum": lambda: load_tensors("torch.save", None, files["torch.save copy"]),
        "torchpack never seen + sum": lambda: load_tensors("torchpack", torchpack, files["copy"]),
    }
    results = {}
    for step in order:
        start, (cpu, faults) = time.perf_counter(), _usage()
        steps[step]()
        cpu_after, faults_after = _usage()
        results[step] = {"wall": time.perf_counter() - start, "cpu": cpu_after - cpu, "faults": faults_after - faults}
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="64 MiB instead of 1 GiB")
    args = parser.parse_args()
    import torchpack
    from workloads import TENSOR_WORKLOADS, save_tensors

    tensors = TENSOR_WORKLOADS["weights_1gib"].build(args.quick)
    rounds = []
    with tempfile.TemporaryDirectory(prefix="torchpack-never-seen-") as workdir:
        files = {tool: os.path.join(workdir, tool) for tool in ("torch.save", "torch.save copy", "torchpack", "copy")}
        save_tensors("torch.save", None, files["torch.save"], tensors)
        save_tensors("torchpack", torchpack, files["torchpack"], tensors)
        del tensors
        for index in range(args.rounds):
            for original, copy in (("torchpack", "copy"), ("torch.save", "torch.save copy")):
                if os.path.exists(files[copy]):
                    os.unlink(files[copy])
                shutil.copyfile(files[original], files[copy])  # a new file: nothing remembered of it
            os.sync()
            order = list(STEPS[index % 3 :] + STEPS[: index % 3])
            env = dict(os.environ, TORCHPACK_CACHE_DIR=os.path.join(workdir, f"cache-{index}"))
            done = subprocess.run([sys.executable, __file__, "--child", json.dumps([files, order])],
                                  env=env, capture_output=True, text=True, check=True)
            rounds.append(json.loads(done.stdout.strip().splitlines()[-1]))
            print(f"round {index + 1}: " + ", ".join(f"{step} {rounds[-1][step]['wall']:.3f} s" for step in order),
                  file=sys.stderr)
    print("| round | BLAKE3 all cores | torch.load mmap + sum | bound | torchpack never seen | / bound, wall | / bound, CPU "
          "| minor faults (BLAKE3, torch.load, torchpack) |")
    print("|---|---|---|---|---|---|---|---|")
    for index, result in enumerate(rounds, 1):
        hashing, loading, ours = (result[step] for step in STEPS)
        bound = {kind: hashing[kind] + loading[kind] for kind in ("wall", "cpu")}
        print(f"| {index} | {hashing['wall']:.3f} s | {loading['wall']:.3f} s | {bound['wall']:.3f} s | "
              f"{ours['wall']:.3f} s | {ours['wall'] / bound['wall']:.2f} | {ours['cpu'] / bound['cpu']:.2f} | "
              f"{hashing['faults']}, {loading['faults']}, {ours['faults']} |")


if __name__ == "__main__":
    sys.path.insert(0, str(HERE))
    if len(sys.argv) == 3 and sys.argv[1] == "--child":
        files, order = json.loads(sys.argv[2])
        print(json.dumps(_round(files, order)))
    else:
        main()
