"""Models for the TorchScript and torch.fx packaging tests."""

import torch
import torch.fx


class Gate(torch.nn.Module):
    """Data-dependent control flow: torch.fx cannot trace through it, so tracers keep it a leaf."""

    def __init__(self) -> None:
        super().__init__()
        self.scale = torch.nn.Parameter(torch.tensor(2.0))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if bool(x.sum() > 0):
            return x * self.scale
        return x - self.scale


class GatedNet(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.linear = torch.nn.Linear(4, 4)
        self.gate = Gate()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.gate(self.linear(x))) + 1


class GateLeafTracer(torch.fx.Tracer):
    def is_leaf_module(self, m: torch.nn.Module, module_qualified_name: str) -> bool:
        return isinstance(m, Gate) or super().is_leaf_module(m, module_qualified_name)


def trace_with_gate_leaf(model: torch.nn.Module) -> torch.fx.GraphModule:
    graph = GateLeafTracer().trace(model)
    return torch.fx.GraphModule(model, graph)


class Holder(torch.nn.Module):
    """An eager module holding a TorchScript submodule and an eager tensor sharing its weight."""

    def __init__(self, scripted: torch.jit.ScriptModule) -> None:
        super().__init__()
        self.scripted = scripted
        self.offset = torch.nn.Parameter(torch.ones(3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.scripted(x) + self.offset
