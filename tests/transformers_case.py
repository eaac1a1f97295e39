"""The issue-16 case: a tiny GPT-2 from transformers, packaged whole and loaded where
transformers is not installed. Shared by tests/test_transformers_whole.py, tests/test_plan.py
and benchmarks/bench_transformers.py.

Run as a script, it does one side of the round trip in its own interpreter:
``export ARCHIVE REFERENCE`` (the main venv) or ``load ARCHIVE REFERENCE`` (the load venv).
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

# The pattern set is what `torchpack plan transformers_case:tiny_gpt2 --call` prints
# (tests/test_plan.py checks that it still does).
#: Installed pure Python: transformers, huggingface_hub and the helpers they import.
INTERN = [
    "annotated_types.**", "anyio.**", "click.**", "h11.**", "httpcore2.**", "httpx2.**",
    "huggingface_hub.**", "idna.**", "markdown_it.**", "mdurl.**", "packaging.**", "pydantic.**",
    "pygments.**", "rich.**", "tqdm.**", "transformers.**", "truststore.**", "typing_inspection.**",
]
#: Distributions shipping compiled extensions, and the pure-Python ones torch itself requires
#: (present wherever torch is; typing_extensions must be one copy, as it patches `typing`).
EXTERN = [
    "filelock.**", "fsspec.**", "hf_xet.**", "jinja2.**", "numpy.**", "pydantic_core.**",
    "regex.**", "safetensors.**", "tokenizers.**", "typing_extensions.**", "yaml.**",
]
#: Not installed, imported at the top of modules that loading GPT-2 never runs (vision,
#: audio, sentencepiece, HTTP/2, notebooks).
MOCK = [
    "IPython.**", "PIL.**", "google.**", "h2.**", "sentencepiece.**", "socksio.**",
    "torchaudio.**", "torchvision.**", "trio.**", "wsproto.**",
]
#: Interned distributions whose metadata packaged code may read (transformers checks versions).
DISTRIBUTIONS = [
    "Pygments", "annotated-types", "anyio", "click", "h11", "httpcore2", "httpx2", "huggingface_hub",
    "idna", "markdown-it-py", "mdurl", "packaging", "pydantic", "rich", "tqdm", "transformers",
    "truststore", "typing-inspection",
]
if sys.version_info < (3, 11):
    # The backport anyio imports before Python 3.11, where ExceptionGroup is not built in.
    INTERN.append("exceptiongroup.**")
    DISTRIBUTIONS.append("exceptiongroup")
#: What the load venv holds: torch (with its requirements), torchpack's dependencies and the
#: compiled externs. Not transformers, not huggingface_hub.
LOAD_VENV_DISTRIBUTIONS = ["torch", "blake3", "isal", "numpy", "regex", "safetensors", "tokenizers", "pyyaml"]

CONFIG = dict(n_layer=2, n_embd=64, n_head=2, vocab_size=1000)


def tiny_gpt2():
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    return GPT2LMHeadModel(GPT2Config(**CONFIG)).eval()


def model_input():
    import torch

    return torch.arange(16).reshape(2, 8) % CONFIG["vocab_size"]


def export(archive: str, reference: str, intern=INTERN, extern=EXTERN, mock=MOCK) -> dict:
    import torch

    from torchpack import PackageExporter
    from torchpack._distributions import save_distribution_metadata

    model = tiny_gpt2()
    with torch.no_grad():
        torch.save(model(model_input()).logits, reference)
    started = time.perf_counter()
    with PackageExporter(archive) as exporter:
        exporter.mock(mock)
        exporter.extern(extern)
        exporter.intern(intern)
        exporter.save_pickle("model", "model.pkl", model)
        save_distribution_metadata(exporter, DISTRIBUTIONS)
        interned = len(exporter.interned_modules())
    return {"export_s": time.perf_counter() - started, "interned": interned}


def load(archive: str, reference: str, materialize=True) -> dict:
    # Asked first: once loaded, packaged transformers publishes itself (see add_view_facade).
    installed = {name: importlib.util.find_spec(name) is not None for name in ("transformers", "huggingface_hub")}
    started = time.perf_counter()
    import torch

    from torchpack import PackageImporter

    importer = PackageImporter(archive, materialize=materialize)
    model = importer.load_pickle("model", "model.pkl")
    loaded = time.perf_counter() - started
    with torch.no_grad():
        logits = model(model_input()).logits
    return {
        "load_s": loaded,
        "equal": bool(torch.equal(logits, torch.load(reference))),
        "model_module": type(model).__module__,
        "model_file": sys.modules[type(model).__module__].__file__,
        "installed": installed,
    }


def _distribution_closure(names: list[str]) -> dict[str, importlib.metadata.Distribution]:
    found: dict[str, importlib.metadata.Distribution] = {}
    pending = list(names)
    while pending:
        name = pending.pop()
        key = re.sub(r"[-_.]+", "-", name).lower()
        if key in found:
            continue
        try:
            distribution = importlib.metadata.distribution(name)
        except importlib.metadata.PackageNotFoundError:
            continue  # a requirement for another platform or Python
        found[key] = distribution
        for requirement in distribution.requires or []:
            if "extra ==" not in requirement:
                pending.append(re.match(r"[A-Za-z0-9_.\-]+", requirement).group(0))
    return found


def make_load_venv(target: Path, top_level: list[str] = LOAD_VENV_DISTRIBUTIONS) -> Path:
    """A venv whose site-packages links exactly the distributions named (and what they require,
    except huggingface_hub that tokenizers names), from this interpreter's environment.

    Linking, not installing: no network, no wheel cache, under a second; the linked files are
    the very ones the export ran against, so the comparison is exact.
    """
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(target)], check=True)
    python = target / "bin" / "python"
    site = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True, text=True, check=True,
    ).stdout.strip()
    distributions = _distribution_closure(top_level)
    distributions.pop("huggingface-hub", None)  # tokenizers lists it; loading never imports it
    for distribution in distributions.values():
        for top in {str(file).split("/")[0] for file in distribution.files or ()}:
            source = Path(distribution.locate_file(top))
            if top in ("..", "bin", "__pycache__") or top.endswith(".pth") or not source.exists():
                continue
            link = Path(site) / top
            if not link.exists():
                link.symlink_to(source)
    return python


if __name__ == "__main__":
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    action, archive_path, reference_path = sys.argv[1:4]
    result = export(archive_path, reference_path) if action == "export" else load(archive_path, reference_path)
    print(json.dumps(result))
