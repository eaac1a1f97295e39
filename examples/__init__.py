"""Example build targets; see each folder's BUILD.toml.

A regular package (not a namespace package) so that an installed distribution that happens to
ship a top-level ``examples`` package cannot take over these modules.
"""
