"""Public API of rules_torchpack.

```
load("@rules_torchpack//rules:defs.bzl", "TorchPackageInfo", "torch_package")
```

* `torch_package`: declares a torchpack archive with the keys of a BUILD.toml target.
* `TorchPackageInfo`: what a `torch_package` target provides (archive, digest,
  extern modules, definition, label).
"""

load(
    "//rules/private:torch_package.bzl",
    _TorchPackageInfo = "TorchPackageInfo",
    _torch_package = "torch_package",
)

TorchPackageInfo = _TorchPackageInfo
torch_package = _torch_package
