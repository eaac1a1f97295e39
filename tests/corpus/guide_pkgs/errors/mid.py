from guide_pkgs.errors import denied_b
