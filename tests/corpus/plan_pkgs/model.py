import numpy
import torch
from packaging.version import Version
from typing_extensions import Self

try:
    import torchpack_absent_plan_optional
except ImportError:
    torchpack_absent_plan_optional = None


class Net(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.linear = torch.nn.Linear(4, 2)
        self.path_length = Version("1.3").minor
        self.scale = float(numpy.float32(0.5))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x) * self.scale + self.path_length

    def copy(self) -> Self:
        return self


def build() -> Net:
    torch.manual_seed(0)
    return Net()


def extras():
    # Only called by code that has the optional package: the export never runs it.
    from . import extras

    return extras
