"""Public API of rules_torchpack.

```
load("@rules_torchpack//rules:defs.bzl", "TorchPackageInfo", "torch_package", "torch_package_test")
```

* `torch_package`: declares a torchpack archive with the keys of a BUILD.toml target.
* `torch_package_test`: a py_test that loads a `torch_package`'s archive and runs a
  check function ("module:function") on its `PackageImporter`.
* `TorchPackageInfo`: what a `torch_package` target provides (archive, digest,
  extern modules, definition, label).
"""

load("//rules/private:package_test.bzl", _torch_package_test = "torch_package_test")
load(
    "//rules/private:torch_package.bzl",
    _TorchPackageInfo = "TorchPackageInfo",
    _torch_package = "torch_package",
)

TorchPackageInfo = _TorchPackageInfo
torch_package = _torch_package
torch_package_test = _torch_package_test
