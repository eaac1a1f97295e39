from imp_sem.circ_bad.b import B

A = "a"
