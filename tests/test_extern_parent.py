"""An interned subtree under an extern parent: the archive's code is the code that runs.

The library ``grafted`` is written twice into ``tmp_path``: the copy the archive is exported
from says ``"archived"``, the copy installed when it loads says ``"installed"``. Running the
wrong one is then visible in every result, not hidden by identical sources. Archives cross
both ways with real torch.package.
"""

from __future__ import annotations

import importlib
import io
import sys
import textwrap
from pathlib import Path

import pytest
import torch
import torch.package

from torchpack import PackageExporter, PackageImporter

FILES = {
    "grafted/__init__.py": "from . import core\nVERSION = {tag!r}\n",
    "grafted/core.py": "def scale():\n    return {scale}\n",
    # As transformers does: a library's own __init__ may walk its folder, which an archive
    # has not got; torch.package leaves such parents of a partly packaged library out.
    "grafted/models/__init__.py": "import os\nMODELS = sorted(os.listdir(os.path.dirname(__file__)))\n",
    "grafted/models/tiny/__init__.py": "from .modeling import Tiny\n",
    "grafted/models/tiny/modeling.py": """
        import torch
        import grafted.core
        from ... import core
        from ...core import scale


        def origin():
            return {tag!r}


        class Tiny(torch.nn.Module):
            def __init__(self):
                super().__init__()
                self.weight = torch.nn.Parameter(torch.ones(3))

            def forward(self, x):
                assert core.scale() == grafted.core.scale() == scale()
                return x * self.weight * scale() + {offset}
    """,
}


def write_library(root: Path, tag: str, scale: int, offset: int) -> Path:
    for name, text in FILES.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text).format(tag=tag, scale=scale, offset=offset))
    return root


@pytest.fixture
def grafted_copies(tmp_path, monkeypatch):
    """Yields a function that makes one copy of the library the importable one."""
    archived = write_library(tmp_path / "archived", "archived", scale=2, offset=100)
    installed = write_library(tmp_path / "installed", "installed", scale=5, offset=0)

    def use(copy: Path) -> None:
        for name in [m for m in sys.modules if m == "grafted" or m.startswith("grafted.")]:
            del sys.modules[name]
        for other in (archived, installed):
            if str(other) in sys.path:
                sys.path.remove(str(other))
        monkeypatch.syspath_prepend(str(copy))
        importlib.invalidate_caches()

    use(archived)
    yield use, archived, installed
    for name in [m for m in sys.modules if m == "grafted" or m.startswith("grafted.")]:
        del sys.modules[name]


def export(exporter_class, patterns) -> bytes:
    model = importlib.import_module("grafted.models.tiny.modeling").Tiny()
    buffer = io.BytesIO()
    with exporter_class(buffer) as exporter:
        for action, pattern in patterns:
            getattr(exporter, action)(pattern)
        exporter.save_pickle("model", "model.pkl", model)
    return buffer.getvalue()


def externs_of(data: bytes) -> list[str]:
    import zipfile

    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        name = next(n for n in archive.namelist() if n.endswith(".data/extern_modules"))
        return [name for name in archive.read(name).decode().split() if name.startswith("grafted")]


SUBTREE_THEN_REST = [("intern", "grafted.models.tiny.**"), ("extern", "grafted.**")]


@pytest.mark.parametrize("exporter_class", [PackageExporter, torch.package.PackageExporter], ids=["torchpack", "torch"])
@pytest.mark.parametrize("importer_class", [PackageImporter, torch.package.PackageImporter], ids=["torchpack", "torch"])
def test_the_archived_subtree_runs_not_the_installed_one(grafted_copies, exporter_class, importer_class):
    use, _archived, installed = grafted_copies
    data = export(exporter_class, SUBTREE_THEN_REST)
    if exporter_class is PackageExporter:
        # Only what is really extern is listed: no parent above the interned subtree.
        assert externs_of(data) == ["grafted.core"]
    use(installed)

    importer = importer_class(io.BytesIO(data))
    model = importer.load_pickle("model", "model.pkl")
    modeling = importer.import_module("grafted.models.tiny.modeling")
    assert type(model) is modeling.Tiny
    assert type(model).__module__ == f"{importer._mangler.parent_name()}.grafted.models.tiny.modeling"
    assert modeling.origin() == "archived"
    # The extern parts are the installed ones, as asked: scale 5, with the archived offset.
    assert model(torch.ones(3)).tolist() == [105.0, 105.0, 105.0]
    assert modeling.grafted.core is sys.modules["grafted.core"]
    assert sys.modules["grafted"].VERSION == "installed"


def test_packaged_parent_gets_its_extern_child_as_attribute(grafted_copies):
    use, _archived, installed = grafted_copies
    data = export(PackageExporter, SUBTREE_THEN_REST)
    use(installed)
    importer = PackageImporter(io.BytesIO(data))
    parent = importer.import_module("grafted")
    # The folder above the interned subtree is the package's own (empty) package...
    assert parent.__name__ == f"{importer.id()}.grafted"
    assert not hasattr(parent, "VERSION")
    # ...and an extern child imported through it is bound on it, as `from grafted import core` needs.
    core = importer.import_module("grafted.core")
    assert core is sys.modules["grafted.core"]
    assert parent.core is core


def test_an_archive_listing_the_parents_as_extern_still_runs_its_own_code(grafted_copies):
    """Archives written before the fix list `grafted` and `grafted.models` as extern."""
    use, _archived, installed = grafted_copies
    data = export(PackageExporter, SUBTREE_THEN_REST)
    from archive_surgery import rebuild

    from helpers_core import records

    listed = records(data)[".data/extern_modules"].decode().split()
    old_style = sorted({*listed, "grafted", "grafted.models"})
    data = rebuild(data, replace={".data/extern_modules": "".join(f"{n}\n" for n in old_style).encode()})
    use(installed)
    importer = PackageImporter(io.BytesIO(data), integrity="eager")
    model = importer.load_pickle("model", "model.pkl")
    assert importer.import_module("grafted.models.tiny.modeling").origin() == "archived"
    assert type(model).__module__.startswith(importer.id())


def test_build_toml_subtree_interned_whatever_the_key_order(grafted_copies):
    """BUILD.toml: the most specific pattern wins, so the key order does not matter."""
    from build_support import run_cli

    _use, workspace, _installed = grafted_copies
    (workspace / "WORKSPACE").write_text("")
    lines = ['extern = "grafted.**"', 'intern = "grafted.models.tiny.**"']
    for order in ("extern-first", "intern-first"):
        body = "\n".join(lines if order == "extern-first" else lines[::-1])
        (workspace / "BUILD.toml").write_text(
            f'[tiny]\n{body}\npickle."model/model.pkl" = {{ call = "grafted.models.tiny.modeling:Tiny" }}\n'
        )
        result = run_cli(workspace, "//:tiny", PYTHONPATH=str(workspace))
        assert result.returncode == 0, result.stderr
        archive = next((workspace / "torchpack-out").rglob("tiny.pt"))
        assert externs_of(archive.read_bytes()) == ["grafted.core"], order
        assert "grafted/models/tiny/modeling.py" in _names(archive.read_bytes()), order


def test_build_toml_deny_beats_a_more_specific_intern(grafted_copies):
    from build_support import run_cli

    _use, workspace, _installed = grafted_copies
    (workspace / "WORKSPACE").write_text("")
    (workspace / "BUILD.toml").write_text(
        '[tiny]\nintern = "grafted.models.tiny.**"\ndeny = "grafted.**"\n'
        'pickle."model/model.pkl" = { call = "grafted.models.tiny.modeling:Tiny" }\n'
    )
    result = run_cli(workspace, "//:tiny", PYTHONPATH=str(workspace))
    assert result.returncode != 0
    assert "grafted.models.tiny.modeling" in result.stderr and "denied" in result.stderr.lower()


def test_python_api_keeps_first_declared_pattern_wins(grafted_copies):
    data = export(PackageExporter, [("extern", "grafted.**"), ("intern", "grafted.models.tiny.**")])
    assert "grafted.models.tiny.modeling" in externs_of(data)
    assert "grafted/models/tiny/modeling.py" not in _names(data)
    same = export(PackageExporter, [("intern", "grafted.models.tiny.**"), ("extern", "grafted.**")])
    assert "grafted/models/tiny/modeling.py" in _names(same)


def _names(data: bytes) -> list[str]:
    import zipfile

    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        return [n.split("/", 1)[1] for n in archive.namelist()]


TRANSFORMERS_EXTERN = [
    "transformers.**", "huggingface_hub.**", "safetensors.**", "tokenizers.**", "numpy.**", "regex.**",
    "packaging.**", "filelock.**", "tqdm.**", "yaml.**", "requests.**", "typing_extensions",
]


@pytest.fixture(scope="module")
def tiny_gpt2():
    import transformers  # a test dependency: see the test extra in pyproject.toml
    torch.manual_seed(0)
    config = transformers.GPT2Config(n_layer=2, n_embd=64, n_head=2, vocab_size=1000, bos_token_id=0, eos_token_id=0)
    return transformers.GPT2LMHeadModel(config).eval()


@pytest.mark.parametrize("exporter_class", [PackageExporter, torch.package.PackageExporter], ids=["torchpack", "torch"])
@pytest.mark.parametrize("importer_class", [PackageImporter, torch.package.PackageImporter], ids=["torchpack", "torch"])
def test_gpt2_interned_under_extern_transformers_runs_from_the_archive(tiny_gpt2, exporter_class, importer_class):
    buffer = io.BytesIO()
    with exporter_class(buffer) as exporter:
        exporter.intern("transformers.models.gpt2.**")
        exporter.extern(TRANSFORMERS_EXTERN)
        exporter.save_pickle("model", "model.pkl", tiny_gpt2)
    importer = importer_class(io.BytesIO(buffer.getvalue()))
    loaded = importer.load_pickle("model", "model.pkl")
    prefix = importer._mangler.parent_name()
    assert type(loaded).__module__ == f"{prefix}.transformers.models.gpt2.modeling_gpt2"
    assert type(loaded) is not type(tiny_gpt2)
    tokens = torch.arange(12).reshape(2, 6)
    with torch.no_grad():
        assert torch.equal(loaded(tokens).logits, tiny_gpt2(tokens).logits)
