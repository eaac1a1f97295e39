"""Example (a): a small nn.Module with interned code and a config resource."""
