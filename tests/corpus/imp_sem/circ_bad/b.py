# CPython raises ImportError here: A is not defined yet in the partially initialised a.
from imp_sem.circ_bad.a import A

B = "b"
