"""Opening an archive of many small records: the central-directory parse and the indexes over it.

How to run (from the repository root)::

    python benchmarks/bench_directory.py                    # 300,000 records, 3 runs each
    python benchmarks/bench_directory.py --entries 20000 --repeat 5

Two archives of ``--entries`` small text records (about 100 bytes each, counting headers): one
written by torchpack's exporter (with its integrity record, which lists every record), one
written with :mod:`zipfile` in torch.package's layout (no integrity record, as a foreign tool
or an attacker would write it). For each, in a fresh process per run:

* ``open``: ``PackageImporter(path)``;
* ``open + file_structure()``: the same, then ``str(importer.file_structure())``;
* peak memory: the RSS high-water mark (``ru_maxrss``) of the second process minus its
  resident size just before opening.

Figures are medians of ``--repeat`` runs. The machine these run on may be shared, so single
figures are noisy; compare medians taken on the same machine in one sitting. The code
measured is whatever ``torchpack`` imports first (set ``PYTHONPATH`` to compare checkouts).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import zipfile


def _resident_bytes() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _record_name(index: int) -> str:
    # 100 folders of records, as resources or sources of a large package would spread.
    return f"res/d{index % 100:02d}/item{index:06d}.txt"


def write_with_torchpack(path: str, entries: int) -> None:
    from torchpack import PackageExporter

    with PackageExporter(path) as exporter:
        for index in range(entries):
            folder, _, leaf = _record_name(index).rpartition("/")
            exporter.save_text(folder.replace("/", "."), leaf, f"record {index}\n")


def write_with_zipfile(path: str, entries: int) -> None:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as archive:
        archive.writestr("package/.data/version", "6\n")
        archive.writestr("package/.data/extern_modules", "")
        for index in range(entries):
            archive.writestr(f"package/{_record_name(index)}", f"record {index}\n")


def _child(path: str, with_structure: bool) -> None:
    import torch  # noqa: F401 - imported before the mark: PackageImporter would import it on first use
    from torchpack import PackageImporter

    before = _resident_bytes()
    start = time.perf_counter()
    importer = PackageImporter(path)
    if with_structure:
        str(importer.file_structure())
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    print(json.dumps({"seconds": seconds, "peak": peak - before}))


def _run(path: str, with_structure: bool) -> dict[str, float]:
    done = subprocess.run(
        [sys.executable, __file__, "--child", path, *(["--structure"] if with_structure else [])],
        capture_output=True, text=True, check=True,
    )
    return json.loads(done.stdout.splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--entries", type=int, default=300_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--child", metavar="ARCHIVE", help=argparse.SUPPRESS)
    parser.add_argument("--structure", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        _child(args.child, args.structure)
        return
    with tempfile.TemporaryDirectory(prefix="torchpack-bench-directory-") as folder:
        print(f"{args.entries:,} records, median of {args.repeat} runs")
        print("| archive | size | open | open + file_structure() | peak memory |")
        print("|---|---|---|---|---|")
        for writer_name, write in (("torchpack", write_with_torchpack), ("zipfile", write_with_zipfile)):
            path = os.path.join(folder, f"{writer_name}.pt")
            write(path, args.entries)
            opened = [_run(path, False)["seconds"] for _ in range(args.repeat)]
            listed = [_run(path, True) for _ in range(args.repeat)]
            print(
                f"| {writer_name} | {os.path.getsize(path) / 2**20:.1f} MiB"
                f" | {statistics.median(opened):.2f} s"
                f" | {statistics.median(run['seconds'] for run in listed):.2f} s"
                f" | {statistics.median(run['peak'] for run in listed) / 2**20:.0f} MiB |",
                flush=True,
            )


if __name__ == "__main__":
    main()
