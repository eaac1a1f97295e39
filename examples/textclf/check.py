"""Expected contents of //examples/textclf, for the tests (works with either importer)."""

from pathlib import Path

import torch


def check(importer) -> None:
    words = Path(__file__).with_name("tokenizer").joinpath("vocab.txt").read_text().split()
    tokenizer = importer.import_module("examples.textclf.tokenizer")
    # vocabulary() goes through importlib.resources inside the package.
    assert tokenizer.vocabulary() == {word: index for index, word in enumerate(words)}
    assert tokenizer.encode("The cat sat on the zebra") == [1, 3, 5, 7, 1, 0]

    model = importer.load_pickle("textclf", "model.pkl")
    assert type(model).__module__.startswith("<torch_package_")
    assert model.classes == ["animals", "weather"]
    scores = model(torch.tensor(tokenizer.encode("the sun is warm")))
    assert scores.shape == (2,) and torch.allclose(scores.sum(), torch.tensor(1.0))
    assert model.predict("the dog ran") in model.classes
