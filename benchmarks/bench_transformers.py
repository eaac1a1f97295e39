"""Export and load times of the issue-16 GPT-2 (tests/transformers_case.py), three ways.

How to run (from the repository root, in a venv with transformers 5.24.0 installed)::

    python benchmarks/bench_transformers.py              # 3 repetitions (~5 minutes on 2 cores)
    python benchmarks/bench_transformers.py --repeat 1

Cases:

* ``torch.package, transformers extern`` and ``torchpack, transformers extern``: the model
  pickled with transformers, huggingface_hub and the compiled libraries extern; loaded in the
  same venv (transformers installed).
* ``torchpack, whole``: the set `torchpack plan` prints (transformers, huggingface_hub and
  their pure-Python helpers interned, ~3,000 modules), loaded with ``materialize=True`` in a
  venv without transformers (tests/transformers_case.make_load_venv). "cold" is the first
  load with an empty torchpack cache (the view is extracted, every module compiled); "warm"
  the next ones (the view is verified, compiled code comes from the cache).

Every export and load runs in a fresh process; only the step is timed (the load includes
importing transformers or the packaged copy of it, as that is what the user waits for; not
interpreter start-up and torch). Figures are medians. The output is markdown.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

REPOSITORY = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPOSITORY / "tests"))

import transformers_case  # noqa: E402

#: transformers extern: what the pickle of the model needs from outside, for both tools.
EXTERN_ALL = ["transformers.**", "huggingface_hub.**", "tokenizers.**", "safetensors.**", "numpy.**", "regex.**"]

STEP = r"""
import json, sys, time
sys.path.insert(0, sys.argv[4])
import torch
import transformers_case
tool, action, archive = sys.argv[1:4]
if action == "export":
    model = transformers_case.tiny_gpt2()
    if tool == "torch.package":
        from torch.package import PackageExporter
    else:
        from torchpack import PackageExporter
    started = time.perf_counter()
    if tool == "torchpack-whole":
        from torchpack import save_distribution_metadata
        with PackageExporter(archive) as exporter:
            exporter.mock(transformers_case.MOCK)
            exporter.extern(transformers_case.EXTERN)
            exporter.intern(transformers_case.INTERN)
            exporter.save_pickle("model", "model.pkl", model)
            save_distribution_metadata(exporter, transformers_case.DISTRIBUTIONS)
    else:
        with PackageExporter(archive) as exporter:
            exporter.extern(json.loads(sys.argv[5]))
            exporter.save_pickle("model", "model.pkl", model)
else:
    if tool == "torch.package":
        from torch.package import PackageImporter
    else:
        from torchpack import PackageImporter
    started = time.perf_counter()
    options = {"materialize": True} if tool == "torchpack-whole" else {}
    model = PackageImporter(archive, **options).load_pickle("model", "model.pkl")
    with torch.no_grad():
        model(transformers_case.model_input())
print(json.dumps(time.perf_counter() - started))
"""


def _step(python: Path | str, tool: str, action: str, archive: Path, cache: Path) -> float:
    environment = {
        **os.environ,
        "PYTHONPATH": str(REPOSITORY),
        "HF_HUB_OFFLINE": "1",
        "TORCHPACK_CACHE_DIR": str(cache),
        "PYTHONWARNINGS": "ignore",
    }
    completed = subprocess.run(
        [str(python), "-c", STEP, tool, action, str(archive), str(REPOSITORY / "tests"), json.dumps(EXTERN_ALL)],
        capture_output=True, text=True, env=environment,
    )
    if completed.returncode != 0:
        raise RuntimeError(f"{tool} {action} failed:\n{completed.stderr[-3000:]}")
    return float(completed.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="bench-transformers-"))
    try:
        load_python = transformers_case.make_load_venv(folder / "load-venv")
        cache = folder / "cache"
        rows = []
        for tool, label in (("torch.package", "torch.package, transformers extern"),
                            ("torchpack", "torchpack, transformers extern")):
            archive = folder / f"{tool}.pt"
            exports = [_step(sys.executable, tool, "export", archive, cache) for _ in range(args.repeat)]
            loads = [_step(sys.executable, tool, "load", archive, cache) for _ in range(args.repeat)]
            rows.append((label, statistics.median(exports), statistics.median(loads), "-", archive.stat().st_size))
        archive = folder / "whole.pt"
        exports = [_step(sys.executable, "torchpack-whole", "export", archive, cache) for _ in range(args.repeat)]
        cold_cache = folder / "cold-cache"
        cold = _step(load_python, "torchpack-whole", "load", archive, cold_cache)
        warm = [_step(load_python, "torchpack-whole", "load", archive, cold_cache) for _ in range(args.repeat)]
        rows.append(("torchpack, whole (load venv without transformers)", statistics.median(exports),
                     statistics.median(warm), cold, archive.stat().st_size))
        print(f"GPT-2 {transformers_case.CONFIG}, transformers 5.24.0, torch {_torch_version()}, "
              f"Python {platform.python_version()}, {os.cpu_count()} CPUs, median of {args.repeat}\n")
        print("| case | export | load (warm) | load (cold cache) | archive |")
        print("| --- | ---: | ---: | ---: | ---: |")
        for label, export, load, cold_load, size in rows:
            cold_text = cold_load if isinstance(cold_load, str) else f"{cold_load:.2f} s"
            print(f"| {label} | {export:.2f} s | {load:.2f} s | {cold_text} | {size / 2**20:.1f} MiB |")
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _torch_version() -> str:
    import torch

    return torch.__version__


if __name__ == "__main__":
    main()
