"""A model without the deferred import of `extras`: for the BUILD.toml target of tests/test_plan.py
(the build's exporter locates modules by importing them, which `extras` cannot survive)."""

import numpy
import torch
from packaging.version import Version


class Small(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.linear = torch.nn.Linear(4, 2)
        self.offset = Version("1.3").minor + float(numpy.float32(0.5))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x) + self.offset


def build() -> Small:
    torch.manual_seed(0)
    return Small()
