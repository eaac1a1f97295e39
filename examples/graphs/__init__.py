"""Example (d): interning a real pure-Python third-party library (networkx)."""
