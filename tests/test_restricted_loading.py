"""Restricted loading: pickle globals outside the package's own modules and the allow-list are
refused - before their module is imported or anything is called - with the global named."""

from __future__ import annotations

import collections
from pathlib import Path

import pytest
import torch

from restricted_pkgs.payloads import RunsCommand, Scaler
from torchpack import PackageExporter, PackageImporter, RestrictedLoadError


def _export(path: Path, name: str, obj: object, *, intern: bool = False) -> Path:
    with PackageExporter(path) as exporter:
        if intern:
            exporter.intern("restricted_pkgs.**")
        else:
            exporter.extern("restricted_pkgs.**")
        exporter.save_pickle("data", name, obj)
    return path


def test_os_system_is_refused_and_never_runs(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    archive = _export(tmp_path / "evil.pt", "evil.pkl", RunsCommand(f"touch {marker}"))
    with pytest.raises(RestrictedLoadError) as raised:
        PackageImporter(archive, restricted=True).load_pickle("data", "evil.pkl")
    message = str(raised.value)
    assert "posix.system" in message and "data/evil.pkl" in message and str(archive) in message
    assert not marker.exists()
    # The same archive without restrictions does run the command: the test is not vacuous.
    PackageImporter(archive).load_pickle("data", "evil.pkl")
    assert marker.exists()


def test_a_global_is_refused_before_its_module_is_imported(tmp_path: Path) -> None:
    archive = _export(tmp_path / "model.pt", "model.pkl", Scaler())
    importer = PackageImporter(archive, restricted=True)
    with pytest.raises(RestrictedLoadError, match=r"restricted_pkgs\.payloads\.Scaler"):
        importer.load_pickle("data", "model.pkl")
    assert "restricted_pkgs.payloads" not in importer.modules


def test_tensors_and_containers_load_with_the_default_allow_list(tmp_path: Path) -> None:
    data = {
        "weights": collections.OrderedDict(w=torch.arange(6.0).view(2, 3), b=torch.zeros(2, dtype=torch.int64)),
        "param": torch.nn.Parameter(torch.ones(2)),
        "meta": {"dtype": torch.float16, "device": torch.device("cpu"), "shape": torch.Size([2, 3]), "ids": {1, 2}},
        "complex": 1 + 2j,
        "state": torch.nn.Linear(3, 2).state_dict(),
    }
    archive = _export(tmp_path / "data.pt", "data.pkl", data)
    loaded = PackageImporter(archive, restricted=True).load_pickle("data", "data.pkl")
    assert torch.equal(loaded["weights"]["w"], data["weights"]["w"])
    assert isinstance(loaded["param"], torch.nn.Parameter)
    assert loaded["meta"] == data["meta"] and loaded["complex"] == 1 + 2j
    assert set(loaded["state"]) == {"weight", "bias"}


def test_classes_from_interned_modules_need_the_callers_trust(tmp_path: Path) -> None:
    archive = _export(tmp_path / "model.pt", "model.pkl", Scaler(), intern=True)
    importer = PackageImporter(archive, restricted=True)
    with pytest.raises(RestrictedLoadError, match=r"trusted_modules=\['restricted_pkgs.payloads'\]"):
        importer.load_pickle("data", "model.pkl")
    assert "restricted_pkgs.payloads" not in importer.modules
    trusting = PackageImporter(archive, restricted=True, trusted_modules=["restricted_pkgs.**"])
    model = trusting.load_pickle("data", "model.pkl")
    assert torch.equal(model(torch.ones(3)), torch.full((3,), 2.0))


def test_torch_modules_need_an_explicit_allowance(tmp_path: Path) -> None:
    archive = _export(tmp_path / "linear.pt", "linear.pkl", torch.nn.Linear(2, 2))
    with pytest.raises(RestrictedLoadError, match=r"torch\.nn\.modules\.linear\.Linear"):
        PackageImporter(archive, restricted=True).load_pickle("data", "linear.pkl")
    linear = PackageImporter(archive, restricted=True, allowed_globals=["torch.nn.modules.**"]).load_pickle(
        "data", "linear.pkl"
    )
    assert isinstance(linear, torch.nn.Linear)


def test_interned_module_that_shadows_an_allowed_name_is_still_checked(tmp_path: Path) -> None:
    # A package cannot smuggle a global past the allow-list by naming an extern module's
    # function: the extern posix.system stays refused even though the package has code.
    archive = tmp_path / "mixed.pt"
    with PackageExporter(archive) as exporter:
        exporter.intern("restricted_pkgs.**")
        exporter.save_pickle("data", "model.pkl", Scaler())
        exporter.save_pickle("data", "evil.pkl", RunsCommand("true"))
    importer = PackageImporter(archive, restricted=True, trusted_modules=["restricted_pkgs.**"])
    assert isinstance(importer.load_pickle("data", "model.pkl"), torch.nn.Module)
    with pytest.raises(RestrictedLoadError, match=r"posix\.system"):
        importer.load_pickle("data", "evil.pkl")
