def compute(x):
    return x + 1


class Helper:
    pass
