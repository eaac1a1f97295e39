"""Objects for the restricted-loading tests: one that runs a shell command when unpickled,
and plain model code that restricted loading should still accept when it is interned."""

import os

import torch


class RunsCommand:
    """Unpickling this calls ``os.system(command)``: the classic malicious pickle."""

    def __init__(self, command: str) -> None:
        self.command = command

    def __reduce__(self):
        return (os.system, (self.command,))


class Scaler(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.weight = torch.nn.Parameter(torch.full((3,), 2.0))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.weight
