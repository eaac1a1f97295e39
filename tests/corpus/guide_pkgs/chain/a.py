from guide_pkgs.chain import b
from guide_pkgs.chain import c

VALUE = b.VALUE + c.VALUE
