"""Example (b): a model whose code uses a helper package that reads data with importlib.resources."""
