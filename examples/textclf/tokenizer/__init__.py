"""A whitespace tokenizer whose vocabulary ships as package data (``vocab.txt``).

It reads the file with ``importlib.resources``, so the same code works from the source tree at
build time and from inside the archive at load time.
"""

import sys
from functools import lru_cache
from importlib import resources

UNKNOWN = 0  # index of "<unk>", the first word of vocab.txt


@lru_cache(maxsize=None)
def vocabulary() -> dict:
    # The package as a module object, not its name: inside an archive __name__ is mangled and
    # only the importer that loaded this module can resolve it; an import goes through it.
    from .. import tokenizer as this_package

    if sys.version_info >= (3, 11):
        text = resources.files(this_package).joinpath("vocab.txt").read_text(encoding="utf-8")
    else:
        # Python 3.10's files() needs a resource reader with files() of its own, which
        # torch.package's lacks; this older call only needs the reader to open the file.
        text = resources.read_text(this_package, "vocab.txt", encoding="utf-8")
    words = text.split()
    return {word: index for index, word in enumerate(words)}


def encode(text: str) -> list:
    vocab = vocabulary()
    return [vocab.get(word, UNKNOWN) for word in text.lower().split()]
