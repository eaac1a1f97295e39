"""Example (c): a package built from another target's archive."""
