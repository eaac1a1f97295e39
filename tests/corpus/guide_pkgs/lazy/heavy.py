# The exporter must be able to mock this module without executing it.
raise RuntimeError("guide_pkgs.lazy.heavy must never be imported by the exporter")
