"""Expected contents of //examples/tinynet, for the tests (works with either importer)."""

import json
import sys
from pathlib import Path

import torch

if sys.version_info >= (3, 11):
    import tomllib
else:
    import tomli as tomllib


def check(importer) -> None:
    config = json.loads(importer.load_text("tinynet", "config.json"))
    model = importer.load_pickle("tinynet", "model.pkl")
    assert type(model).__module__.endswith("examples.tinynet.model"), type(model).__module__
    assert type(model).__module__.startswith("<torch_package_"), "the model's code must come from the package"
    assert not model.training
    y = model(torch.ones(2, config["in_features"]))
    assert y.shape == (2, config["out_features"])
    assert torch.allclose(y.sum(-1), torch.ones(2))

    # The weights are exactly those of the factory run under the target's seed.
    from examples.tinynet.model import build

    seed = tomllib.loads(Path(__file__).with_name("BUILD.toml").read_text())["tinynet"]["seed"]
    torch.manual_seed(seed)
    expected = build().state_dict()
    for name, tensor in model.state_dict().items():
        assert torch.equal(tensor, expected[name]), name
