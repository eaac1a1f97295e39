import torch
from torch import nn


class MLP(nn.Module):
    def __init__(self, n_in: int = 4, hidden: int = 8, n_out: int = 2):
        super().__init__()
        self.l1 = nn.Linear(n_in, hidden)
        self.l2 = nn.Linear(hidden, n_out)

    def forward(self, x):
        h = torch.relu(self.l1(x))
        if self.l1.out_features > 4:  # static control flow: fine for symbolic tracing
            h = h * 2
        return self.l2(h)
