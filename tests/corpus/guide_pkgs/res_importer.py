import torch_package_importer  # this is the PackageImporter that imported this module.


# Prints "hello world!", equivalent to importlib.resources.read_text
def get_my_resource():
    return torch_package_importer.load_text("guide_resource", "a.txt")


def get_my_pickle():
    return torch_package_importer.load_pickle("my_pickle", "obj.pkl")


def get_importer():
    return torch_package_importer
