"""Reads resources of the archive-only package ``guide_resource`` with importlib.resources."""

import importlib.resources

import guide_resource


def get_my_resource():
    # the guide's example: the legacy API
    return importlib.resources.read_text(guide_resource, "a.txt")


def files_read_text(name="a.txt"):
    return importlib.resources.files(guide_resource).joinpath(name).read_text()


def files_read_bytes(name="blob.bin"):
    return (importlib.resources.files(guide_resource) / name).read_bytes()


def files_names():
    return sorted(p.name for p in importlib.resources.files(guide_resource).iterdir())


def files_is_file(name):
    return importlib.resources.files(guide_resource).joinpath(name).is_file()


def legacy_open_binary(name="blob.bin"):
    with importlib.resources.open_binary(guide_resource, name) as f:
        return f.read()


def legacy_is_resource(name):
    return importlib.resources.is_resource(guide_resource, name)


def legacy_contents():
    return sorted(importlib.resources.contents(guide_resource))
