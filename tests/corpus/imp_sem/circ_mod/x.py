import imp_sem.circ_mod.y

X = "x"


def via_y():
    return imp_sem.circ_mod.y.read_x()
