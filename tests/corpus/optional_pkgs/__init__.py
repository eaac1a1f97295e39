"""Modules importing packages that are not installed, at guarded and deferred sites
(tests/test_optional_imports.py). No module named ``torchpack_absent_*`` exists anywhere."""
