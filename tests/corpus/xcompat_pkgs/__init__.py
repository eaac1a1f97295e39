"""Sample code exported by tests/test_crosscompat.py with both torch.package and torchpack."""
