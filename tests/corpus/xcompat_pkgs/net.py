import torch
from torch import nn

from xcompat_pkgs.layers import Block


class XNet(nn.Module):
    """A small conv net: interned class, parameters, buffers, a shared (tied) weight."""

    def __init__(self, channels: int = 3, classes: int = 5):
        super().__init__()
        self.stem = nn.Conv2d(1, channels, kernel_size=3, padding=1)
        self.blocks = nn.Sequential(Block(channels), Block(channels))
        self.head = nn.Linear(channels, classes)
        self.tied = nn.Linear(channels, classes)
        self.tied.weight = self.head.weight
        self.register_buffer("scale", torch.tensor(0.5))
        self.label = "xnet"

    def forward(self, x):
        h = self.blocks(self.stem(x)).mean(dim=(2, 3))
        return self.head(h) * self.scale + self.tied(h)
