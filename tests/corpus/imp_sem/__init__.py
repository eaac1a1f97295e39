"""Sample code exported by tests/test_importlib_semantics.py."""

ROOT = "imp_sem"
