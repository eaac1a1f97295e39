import torch

from .registry import DEFAULTS, scale


class Point:
    """A plain class; instances are pickled by the property tests."""

    kind = DEFAULTS["kind"]

    def __init__(self, x, y, payload=None):
        self.x = x
        self.y = y
        self.payload = payload

    def norm1(self):
        return scale(abs(self.x) + abs(self.y))

    def __eq__(self, other):
        return (
            type(other).__name__ == "Point"
            and self.x == other.x
            and self.y == other.y
        )

    def __repr__(self):
        return f"Point({self.x!r}, {self.y!r}, payload={self.payload!r})"


class Tiny(torch.nn.Module):
    def __init__(self, width=3):
        super().__init__()
        self.lin = torch.nn.Linear(width, 2)
        self.register_buffer("offset", torch.arange(2, dtype=torch.float32))

    def forward(self, x):
        return self.lin(x) + self.offset
