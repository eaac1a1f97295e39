import imp_sem.circ_mod.x


def read_x():
    return imp_sem.circ_mod.x.X + "!"
