"""Repository rule that materialises one of the offline stand-in repositories.

The sources live in `//rules/third_party/<name>/`; files called `BUILD.stand_in`
become `BUILD.bazel` in the created repository.
"""

def _stand_in_repository_impl(rctx):
    anchor = rctx.path(rctx.attr._anchor).dirname
    for relative in rctx.attr.files:
        source = rctx.path("%s/%s/%s" % (anchor, rctx.attr.source, relative))
        if not source.exists:
            fail("rules_torchpack stand-in file %s is missing" % source)
        destination = relative
        if relative == "BUILD.stand_in":
            destination = "BUILD.bazel"
        elif relative.endswith("/BUILD.stand_in"):
            destination = relative[:-len("BUILD.stand_in")] + "BUILD.bazel"
        rctx.symlink(source, destination)
    rctx.file("WORKSPACE.bazel", 'workspace(name = "%s")\n' % rctx.name)

stand_in_repository = repository_rule(
    implementation = _stand_in_repository_impl,
    doc = "Creates an offline stand-in repository from files under //rules/third_party.",
    attrs = {
        "source": attr.string(
            mandatory = True,
            doc = "Folder under `//rules/third_party` holding the stand-in's files.",
        ),
        "files": attr.string_list(
            mandatory = True,
            doc = "Files of the stand-in, relative to `source`.",
        ),
        "_anchor": attr.label(
            default = Label("//rules/third_party:BUILD.bazel"),
            allow_single_file = True,
        ),
    },
)
