class Record:
    """A plain interned class holding tensors, for re-export tests."""

    def __init__(self, name, tensors):
        self.name = name
        self.tensors = tensors

    def total(self):
        return sum(float(t.sum()) for t in self.tensors.values())
