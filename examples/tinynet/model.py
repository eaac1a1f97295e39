"""A small MLP whose shape comes from config.json, which the target also saves as a resource."""

import json
from pathlib import Path

import torch
from torch import nn


class TinyNet(nn.Module):
    def __init__(self, in_features: int, hidden: int, out_features: int) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Linear(in_features, hidden), nn.ReLU(), nn.Linear(hidden, out_features))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x).softmax(-1)


def build() -> TinyNet:
    """The factory named in BUILD.toml; its weights come from the target's seed."""
    config = json.loads(Path(__file__).with_name("config.json").read_text(encoding="utf-8"))
    return TinyNet(config["in_features"], config["hidden"], config["out_features"]).eval()
