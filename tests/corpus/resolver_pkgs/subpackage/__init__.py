SUB_MARKER = "resolver_pkgs.subpackage"
