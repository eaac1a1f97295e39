from guide_pkgs.actions import leaf
from guide_pkgs.actions.helper import compute
import guide_pkgs.actions.other


def leaf_value():
    return leaf.VALUE


def run():
    return compute(leaf.VALUE)


def other_value():
    return guide_pkgs.actions.other.OTHER
