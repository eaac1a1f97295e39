import guide_pkgs.errors.mid
from guide_pkgs.errors import denied_a
