import resolver_pkgs.subpackage

def sub_marker():
    return resolver_pkgs.subpackage.SUB_MARKER
