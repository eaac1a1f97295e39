"""Stand-in for ``torchvision/models/resnet.py`` in the guide's examples."""

import torch
from torch import nn

from guide_pkgs.vision.utils import double


class TinyResNet(nn.Module):
    def __init__(self, width: int = 4):
        super().__init__()
        self.fc = nn.Linear(width, width)
        self.register_buffer("bias2", torch.arange(width, dtype=torch.float32))

    def forward(self, x):
        return double(torch.relu(self.fc(x)) + x) + self.bias2
