"""Expected contents of //examples/composed, for the tests (works with either importer)."""

import torch


def check(importer) -> None:
    base = importer.load_pickle("composed", "base.pkl")
    calibrated = importer.load_pickle("composed", "calibrated.pkl")
    assert type(base).__module__.endswith("examples.tinynet.model")
    assert type(calibrated).__module__.endswith("examples.composed.head")
    assert type(calibrated.base) is type(base), "both objects come from the same packaged code"
    for mine, theirs in zip(base.state_dict().values(), calibrated.base.state_dict().values()):
        assert torch.equal(mine, theirs)
    y = calibrated(torch.ones(2, 4))
    assert y.shape == (2, 2) and torch.allclose(y.sum(-1), torch.ones(2))
