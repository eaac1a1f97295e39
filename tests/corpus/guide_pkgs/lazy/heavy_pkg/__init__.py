# The exporter must be able to mock this package without executing it.
raise RuntimeError("guide_pkgs.lazy.heavy_pkg must never be imported by the exporter")
