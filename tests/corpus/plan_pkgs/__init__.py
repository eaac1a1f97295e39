"""A model whose code reaches every kind of dependency `torchpack plan` decides on
(tests/test_plan.py): compiled (numpy), installed pure Python (packaging), a requirement of
torch (typing_extensions), an optional module that is not installed (left out), and one that
is not installed but imported at the top of a module (mocked)."""
