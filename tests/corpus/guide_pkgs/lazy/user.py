from guide_pkgs.lazy import heavy
import guide_pkgs.lazy.heavy_pkg


def use_heavy():
    return heavy.train_forever()


def value():
    return 7
