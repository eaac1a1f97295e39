def thing():
    return "real thing"


CONSTANT = 3
