"""Sample code exported by tests/test_guide.py: one module per example of the user guide."""
