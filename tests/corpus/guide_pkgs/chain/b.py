from guide_pkgs.chain import c

VALUE = c.VALUE * 10
