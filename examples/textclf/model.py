"""A bag-of-words classifier built on the tokenizer package."""

import torch
from torch import nn

from . import tokenizer


class BagOfWords(nn.Module):
    def __init__(self, classes: list, dim: int) -> None:
        super().__init__()
        self.classes = list(classes)
        self.embed = nn.EmbeddingBag(len(tokenizer.vocabulary()), dim, mode="mean")
        self.head = nn.Linear(dim, len(self.classes))

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.head(self.embed(ids.unsqueeze(0))).softmax(-1)[0]

    def predict(self, text: str) -> str:
        scores = self(torch.tensor(tokenizer.encode(text)))
        return self.classes[int(scores.argmax())]


def build(classes: list, dim: int) -> BagOfWords:
    return BagOfWords(classes, dim).eval()
