"""Implementation of the `torch_package` rule and the `TorchPackageInfo` provider.

Load them from `//rules:defs.bzl`; this file is private to rules_torchpack.

A `torch_package` target is the Bazel twin of a `BUILD.toml` target table: the macro
takes the same keys with the same values (Starlark strings, lists and dicts instead
of TOML ones), and the rule turns them into the canonical target definition
(`DEF.json`, the JSON that `python -m torchpack.build --list --json` prints for the
same table).  One `TorchPackage` action then runs
`python -m torchpack.build.action --definition DEF.json ...` in the same sanitised
environment as the `python -m torchpack.build` CLI, so both produce byte-identical
archives.  Unlike the CLI, Bazel only lets the export see declared files: every
workspace Python source the export imports (interned modules, the modules of the
factories, `__init__.py` files of their packages) must be in `srcs`.

The workspace's `[tool.torchpack] python-path` (pyproject.toml) is the `python_path`
attribute here: a src layout names its folders on each target (a constant in a .bzl file
keeps them in one place), and a target whose `python_path` differs from the pyproject's
fails to load rather than name its records otherwise than the CLI.

The rule writes the target as typed (`<out>.typed.json`, `data` as the files the macro's
glob matched); the action's builder turns it into `DEF.json` with the CLI's code, which
normalises `requires` and names the `data` records, so neither lives here twice.
"""

load("@torchpack_python//:defs.bzl", "PYPROJECT_PYTHON_PATH")

TorchPackageInfo = provider(
    doc = "A torchpack archive built by a `torch_package` target.",
    fields = {
        "archive": "File: the `.pt` archive (a torch.package-compatible ZIP).",
        "definition": "File: the canonical target definition (`DEF.json`) the archive was built from.",
        "digest": "File: the archive's SHA-256, as 64 lowercase hex digits and a newline.",
        "extern_modules": "File: the modules the archive leaves to the loading environment " +
                          "(its `.data/extern_modules` record), one per line.  Known only " +
                          "once the archive is built, hence a file.",
        "signature": "File or None: `<out>.sig`, the archive's Ed25519 signature, for " +
                     "targets with `sign = True` (see `torchpack sign`).",
        "label": "Label: the `torch_package` target, i.e. the label that dependants use " +
                 "in `from = ...` to load objects out of this archive.",
    },
)

_ACTION_KINDS = ("deny", "mock", "extern", "intern")

def _package_label(label):
    """`//pkg:name`, the label form of `torchpack.build` (main-repository targets only)."""
    return "//%s:%s" % (label.package, label.name)

def _label_key(label):
    return (label.package, label.name)

def _absolute(ctx, text):
    """Resolves a label written in the target (`:x`, `x`, `//dir`, `//dir:x`) like BUILD.toml does."""
    if type(text) != "string" or not text or text.startswith("@") or text.startswith("/") and not text.startswith("//"):
        return text  # not a label torchpack accepts: the builder reports it
    if not text.startswith("//") and not text.startswith(":"):
        if "/" in text or ":" in text:
            return text
        text = ":" + text
    return _package_label(ctx.label.relative(text))

def _strings(value):
    """A TOML string-or-array-of-strings value as a list, or None if it is neither."""
    if type(value) == "string":
        return [value]
    if type(value) == "list" and all([type(v) == "string" for v in value]):
        return value
    return None

def _normalise_actions(value):
    """intern/extern/mock/deny: a glob, a list of globs (one call), or one or more tables."""
    globs = _strings(value)
    if globs != None:
        return [{"include": globs, "exclude": [], "allow_empty": True}] if globs else []
    entries = [value] if type(value) == "dict" else value
    if type(entries) != "list":
        return value
    actions = []
    for entry in entries:
        if type(entry) != "dict" or "include" not in entry:
            return value  # malformed: passed on for the builder to report
        action = dict(entry)
        for key in ("include", "exclude"):
            if key in action and _strings(action[key]) != None:
                action[key] = _strings(action[key])
        action.setdefault("exclude", [])
        action.setdefault("allow_empty", True)
        actions.append(action)
    return actions

def _normalise_loaded(ctx, value):
    if type(value) != "dict" or "from" not in value:
        return value
    loaded = dict(value)
    loaded["from"] = _absolute(ctx, loaded["from"])
    return loaded

def _normalise_pickle(ctx, value):
    if type(value) != "dict":
        return value
    obj = dict(value)
    if "from" in obj:
        return _normalise_loaded(ctx, obj)
    if "call" in obj:
        obj.setdefault("args", {})
        dep_args = obj.setdefault("dep_args", {})
        if type(dep_args) == "dict":
            obj["dep_args"] = {name: _normalise_loaded(ctx, loaded) for name, loaded in dep_args.items()}
    return obj

def _normalise_sources(value):
    if type(value) != "dict":
        return value
    sources = {}
    for module, entry in value.items():
        if type(entry) == "string":
            entry = {"source": entry}
        elif type(entry) == "dict":
            entry = dict(entry)
        else:
            sources[module] = entry
            continue
        entry.setdefault("package", False)
        sources[module] = entry
    return sources

def _decode(ctx, attr_name):
    text = getattr(ctx.attr, attr_name)
    if not text:
        return None
    return json.decode(text)

def _resource_files(ctx, attr_name):
    """`text`/`binary`: record -> execroot-relative path, and the files to declare as inputs."""
    records = {}
    files = []
    for target, record in getattr(ctx.attr, attr_name).items():
        target_files = target.files.to_list()
        if len(target_files) != 1:
            fail("%s must name exactly one file, %s gives %d" % (attr_name, target.label, len(target_files)), attr_name)
        files.append(target_files[0])
        for one in record.split("\n"):
            records[one] = target_files[0].path
    return records, files

def _definition(ctx):
    """The target as typed: the builder makes the canonical definition of it, as
    `torchpack.build.schema.Target.definition` does for the CLI."""
    for dep in ctx.attr.deps + [ctx]:
        if dep.label.workspace_root:
            fail("torch_package targets and their deps must be in the main repository, not %s" % dep.label)
    text, text_files = _resource_files(ctx, "text")
    binary, binary_files = _resource_files(ctx, "binary")
    definition = {
        "label": _package_label(ctx.label),
        "out": ctx.attr.out or ctx.label.name + ".pt",
        "seed": ctx.attr.seed,
        "deps": [_package_label(label) for label in sorted([dep.label for dep in ctx.attr.deps], key = _label_key)],
        "modules": ctx.attr.modules,
        "sources": _normalise_sources(_decode(ctx, "sources") or {}),
        "text": text,
        "binary": binary,
        "pickle": {
            record: _normalise_pickle(ctx, value)
            for record, value in (_decode(ctx, "pickle") or {}).items()
        },
    }
    for kind in _ACTION_KINDS:
        value = _decode(ctx, kind)
        definition[kind] = [] if value == None else _normalise_actions(value)

    # Files, not globs: Bazel's glob matched them in the macro; the builder names their records.
    if ctx.files.data:
        definition["data"] = [file.path for file in ctx.files.data]

    # Present only when set, as in Target.definition: targets without them keep their bytes.
    if ctx.attr.requires:
        definition["requires"] = ctx.attr.requires
    if ctx.attr.main:
        definition["main"] = ctx.attr.main
    if ctx.attr.compat:
        definition["compat"] = ctx.attr.compat
    return definition, text_files + binary_files + ctx.files.data

def _srcs(ctx):
    sets = []
    for src in ctx.attr.srcs:
        sets.append(src[DefaultInfo].files)
        sets.append(src[DefaultInfo].default_runfiles.files)
        if PyInfo in src:
            sets.append(src[PyInfo].transitive_sources)
    return depset(transitive = sets)

def _source_date_epoch(ctx):
    value = ctx.configuration.default_shell_env.get("SOURCE_DATE_EPOCH")
    return {"SOURCE_DATE_EPOCH": value} if value else {}

def _sign(ctx, archive):
    """`<out>.sig` beside the archive, signed with the key file $TORCHPACK_SIGN_KEY names.

    The key is read from outside the build: its path comes from
    `--action_env=TORCHPACK_SIGN_KEY=/abs/path`, and the action is never cached or run
    remotely, so the signature is made on this machine each build with the current key
    (the archive itself stays cached: signing does not change its bytes).
    """
    signature = ctx.actions.declare_file(archive.basename + ".sig", sibling = archive)
    key_file = ctx.configuration.default_shell_env.get("TORCHPACK_SIGN_KEY")
    ctx.actions.run(
        executable = ctx.executable._builder,
        arguments = ["--sign", "--archive", archive.path, "--signature", signature.path,
                     "--target", _package_label(ctx.label)],
        inputs = [archive],
        outputs = [signature],
        mnemonic = "TorchPackageSign",
        progress_message = "Signing %s" % archive.short_path,
        env = {"TORCHPACK_SIGN_KEY": key_file} if key_file else {},
        use_default_shell_env = False,
        # The key file lies outside the sandbox and must never reach a cache.
        execution_requirements = {"no-cache": "1", "no-remote": "1", "no-sandbox": "1"},
    )
    return signature

def _torch_package_impl(ctx):
    definition, resources = _definition(ctx)
    out = definition["out"]
    archive = ctx.actions.declare_file(out)
    digest = ctx.actions.declare_file(out + ".sha256")
    extern_modules = ctx.actions.declare_file(out + ".extern_modules")
    definition_file = ctx.actions.declare_file(out + ".def.json")
    typed_file = ctx.actions.declare_file(out + ".typed.json")
    ctx.actions.write(typed_file, json.encode(definition))

    dep_infos = [dep[TorchPackageInfo] for dep in ctx.attr.deps]
    args = ctx.actions.args()
    args.add("--archive", archive)
    args.add("--digest", digest)
    args.add("--extern-modules", extern_modules)
    args.add("--build-file", ctx.build_file_path)
    args.add("--workspace", ".")
    args.add("--typed-definition", typed_file)
    args.add("--")
    args.add("--definition", definition_file)
    args.add("--output", archive)
    for info in dep_infos:
        args.add("--dep=%s=%s" % (_package_label(info.label), info.archive.path))
    for folder in ctx.attr.python_path:
        args.add("--python-path=" + (folder or "."))

    # Always in a file (`@FILE`, one argument per line): what Bazel hands a persistent
    # worker as a WorkRequest's arguments.
    args.use_param_file("@%s", use_always = True)
    args.set_param_file_format("multiline")

    ctx.actions.run(
        executable = ctx.executable._builder,
        arguments = [args],
        inputs = depset(
            [typed_file] + resources + [info.archive for info in dep_infos],
            transitive = [_srcs(ctx)],
        ),
        outputs = [archive, digest, extern_modules, definition_file],
        mnemonic = "TorchPackage",
        progress_message = "Packaging %s into %s" % (ctx.label, archive.short_path),
        # The builder sets the export's whole environment itself (PYTHONHASHSEED=0,
        # TZ=UTC, C.UTF-8 locale, ...), exactly as the torchpack CLI does; like the CLI it
        # takes SOURCE_DATE_EPOCH from its caller (here --action_env=SOURCE_DATE_EPOCH=...).
        env = _source_date_epoch(ctx),
        use_default_shell_env = False,
        # The builder can be a persistent worker (Bazel's default strategy for actions that
        # support one; `--strategy=TorchPackage=sandboxed` turns it off): torch is imported
        # once per worker instead of once per action.
        execution_requirements = {"supports-workers": "1"},
    )

    signature = _sign(ctx, archive) if ctx.attr.sign else None
    outputs = [archive] + ([signature] if signature else [])

    return [
        DefaultInfo(
            files = depset(outputs),
            runfiles = ctx.runfiles(files = outputs),
        ),
        TorchPackageInfo(
            archive = archive,
            signature = signature,
            definition = definition_file,
            digest = digest,
            extern_modules = extern_modules,
            label = ctx.label,
        ),
        OutputGroupInfo(
            torchpack_metadata = depset([digest, extern_modules, definition_file]),
        ),
    ]

torch_package_rule = rule(
    implementation = _torch_package_impl,
    doc = """Builds one torchpack archive (`<out>`, default `<name>.pt`).

Use the `torch_package` macro from `//rules:defs.bzl`: it takes every key of a
`BUILD.toml` target with its natural Starlark value and encodes the structured
ones (globs tables, sources, pickled objects) into the JSON-string attributes
below.

Outputs: the archive (default output; with `sign`, `<out>.sig` too), and in the `torchpack_metadata` output
group `<out>.sha256`, `<out>.extern_modules` and `<out>.def.json`.
""",
    attrs = {
        "srcs": attr.label_list(
            allow_files = True,
            doc = "Every workspace file the export reads: the Python sources of interned " +
                  "and saved modules and of the factories' modules (with the `__init__.py` " +
                  "of their packages), and data files the factories open.  `py_library` " +
                  "targets contribute their transitive sources and runfiles.",
        ),
        "deps": attr.label_list(
            providers = [TorchPackageInfo],
            doc = "`torch_package` targets whose archives this export loads objects from " +
                  "(BUILD.toml `deps`); pickled objects name them in `from`.",
        ),
        "deny": attr.string(doc = "JSON of BUILD.toml's `deny`: a glob, a list of globs, or tables " +
                                  "`{include, exclude, allow_empty}`."),
        "mock": attr.string(doc = "JSON of BUILD.toml's `mock` (same forms as `deny`)."),
        "extern": attr.string(doc = "JSON of BUILD.toml's `extern` (same forms as `deny`)."),
        "intern": attr.string(doc = "JSON of BUILD.toml's `intern` (same forms as `deny`)."),
        "modules": attr.string_list(doc = "Modules saved with `save_module`, in this order."),
        "sources": attr.string(doc = "JSON of BUILD.toml's `sources`: module -> source string " +
                                     "or `{source, package}`."),
        "text": attr.label_keyed_string_dict(
            allow_files = True,
            doc = "File -> record path (`pkg/name.txt`) saved with `save_text`; several records " +
                  "for one file are separated by newlines.",
        ),
        "binary": attr.label_keyed_string_dict(
            allow_files = True,
            doc = "File -> record path saved with `save_binary` (as `text`).",
        ),
        "data": attr.label_list(
            allow_files = True,
            doc = "Files saved as binary records named by their paths below the first " +
                  "`python_path` folder holding them (the macro's `data` globs).",
        ),
        "pickle": attr.string(doc = "JSON of BUILD.toml's `pickle`: record -> `{call, args, dep_args}`, " +
                                    "`{attr}` or `{from, record}`."),
        "requires": attr.string_list(doc = "PEP 508 requirements the interpreter's environment must satisfy."),
        "main": attr.string(doc = "`module:function`: the archive's entry point, called by `torchpack run`."),
        "compat": attr.string(doc = "A loader the packaged code must also load in: `torch.package`."),
        "python_path": attr.string_list(
            doc = "Folders, relative to the workspace root (`\"\"`: the root), that the export " +
                  "imports code from, in order: `[tool.torchpack] python-path` of the CLI.",
        ),
        "seed": attr.int(default = 0, doc = "Seed of `random`, numpy and torch before the objects are built."),
        "out": attr.string(doc = "File name of the archive; default `<name>.pt`."),
        "sign": attr.bool(
            default = False,
            doc = "Also write `<out>.sig`, an Ed25519 signature of the archive, with the key " +
                  "file named by `--action_env=TORCHPACK_SIGN_KEY=/abs/path` (never an input).",
        ),
        "_builder": attr.label(
            default = Label("//rules/private:builder"),
            executable = True,
            cfg = "exec",
            doc = "Runs torchpack.build.action in a sanitised interpreter.",
        ),
    },
)

def _json_or_empty(value):
    if value == None:
        return ""
    return json.encode(value)

def _invert(records, attr_name):
    """{record: file} (BUILD.toml's direction) -> {file: "record\\nrecord"} for the rule."""
    if type(records) != "dict":
        fail("%s must be a dict of record path -> file, got %s" % (attr_name, type(records)))
    by_file = {}
    for record, file in records.items():
        by_file[file] = by_file[file] + "\n" + record if file in by_file else record
    return by_file

def _python_path(where, folders):
    """`[tool.torchpack] python-path` normalised as the CLI does: "" is the workspace root."""
    folders = _strings(folders)
    if not folders:
        fail("%s: python_path must be a non-empty list of folders relative to the workspace root, e.g. [\"src\"]" % where)
    normal = []
    for folder in folders:
        if folder.startswith("/") or "\\" in folder or ".." in folder.split("/"):
            fail("%s: python_path: %r must be a folder inside the workspace, relative to its root" % (where, folder))
        folder = "/".join([part for part in folder.split("/") if part not in ("", ".")])
        if folder not in normal:
            normal.append(folder)
    return normal

def _data_files(where, data):
    """BUILD.toml's `data` globs, matched by Bazel's glob: files relative to this package.

    Each glob must match on its own, as in BUILD.toml.  Bazel's glob does not enter a
    sub-package; the CLI refuses a file there, so both package the same files.
    """
    globs = _strings(data)
    if globs == None:
        fail("%s: data must be a file glob or a list of them, got %s" % (where, type(data)))
    files = []
    for pattern in globs:
        if not pattern or pattern.startswith("/") or ".." in pattern.split("/") or "\\" in pattern:
            fail("%s: data: glob %r must be relative to the BUILD file, without '..'" % (where, pattern))
        matched = native.glob([pattern], exclude = ["**/__pycache__/**"])
        if not matched:
            fail("%s: data: glob %r matches no file in %s/" % (where, pattern, native.package_name() or "."))
        files.extend([file for file in matched if file not in files])
    return files

def _check_python_path(where, python_path):
    """The CLI names records below pyproject.toml's python-path: a target must say the same."""
    if PYPROJECT_PYTHON_PATH == None or (python_path or [""]) == PYPROJECT_PYTHON_PATH:
        return
    wanted = json.encode([folder or "." for folder in PYPROJECT_PYTHON_PATH])
    fail(("%s: python_path is %s, but pyproject.toml's [tool.torchpack] python-path is %s: " +
          "write python_path = %s on the target (a constant in a .bzl file keeps them in one place)") % (
        where,
        json.encode([folder or "." for folder in python_path]) if python_path != None else "not set (the workspace root)",
        wanted,
        wanted,
    ))

def torch_package(
        name,
        srcs = [],
        deps = [],
        intern = None,
        extern = None,
        mock = None,
        deny = None,
        modules = [],
        sources = None,
        text = {},
        binary = {},
        data = None,
        pickle = None,
        requires = None,
        main = None,
        compat = None,
        seed = 0,
        out = None,
        sign = False,
        python_path = None,
        **kwargs):
    """Declares a torchpack archive, with the keys of a BUILD.toml target.

    ```
    torch_package(
        name = "tinynet",
        srcs = ["//examples:__init__.py", "__init__.py", "model.py"],
        intern = ["examples", "examples.tinynet.**"],
        extern = "torch.**",
        seed = 7,
        text = {"tinynet/config.json": "config.json"},
        pickle = {"tinynet/model.pkl": {"call": "examples.tinynet.model:build"}},
    )
    ```

    Args:
      name: target name; the archive is `<name>.pt` unless `out` says otherwise.
      srcs: the workspace files the export reads (Bazel only: BUILD.toml builds
        see the whole workspace).
      deps: `torch_package` targets whose archives objects are loaded from.
      intern: module globs to intern: `"glob"`, `["glob", ...]` (one call), or
        `{"include": [...], "exclude": [...], "allow_empty": bool}` tables (a
        list of them for several calls).
      extern: module globs left to the loading environment (same forms).
      mock: module globs replaced by mocks (same forms).
      deny: module globs that must not be needed (same forms).
      modules: modules saved with `save_module`.
      sources: `{module: source}` or `{module: {"source": ..., "package": bool}}`,
        saved with `save_source_string`.
      text: `{record: file}`, files (labels, relative to this package) saved as
        UTF-8 text records, e.g. `{"model/config.json": "config.json"}`.
      binary: `{record: file}`, files saved as binary records.
      data: a file glob or a list of them, relative to this package: each file
        is a binary record named by its path below its `python_path` folder.
        Expanded with Bazel's `glob`, which stops at sub-packages (the CLI
        refuses a glob matching a file there).
      pickle: `{record: object}` where object is `{"call": "module:function",
        "args": {...}, "dep_args": {name: {"from": label, "record": path}}}`,
        `{"attr": "module:name"}` or `{"from": label, "record": path}`.
      requires: a PEP 508 requirement or a list of them, checked against the
        toolchain interpreter's environment and recorded in the provenance.
      main: `"module:function"`, the archive's entry point (`torchpack run`).
      compat: `"torch.package"`: fail when the packaged code would load
        differently there.
      seed: seed of `random`, numpy and torch before the objects are built.
      out: file name of the archive.
      sign: also write `<out>.sig`, signed with the key file that
        `--action_env=TORCHPACK_SIGN_KEY=/abs/path` names.
      python_path: folders, relative to the workspace root, that code is
        imported from, in order (default: the root): the CLI's
        `[tool.torchpack] python-path`, e.g. `["src"]`, which it must equal
        when the workspace's pyproject.toml has a `[tool.torchpack]` table.
      **kwargs: common attributes (`visibility`, `tags`, `testonly`, ...).
    """
    where = "//%s:%s" % (native.package_name(), name)
    folders = _python_path(where, python_path) if python_path != None else None
    _check_python_path(where, folders)
    if main == "":
        fail("%s: main: '' is not of the form 'package.module:function'" % where)
    if requires != None and _strings(requires) == None:
        fail("%s: requires must be a PEP 508 requirement or a list of them, got %s" % (where, type(requires)))
    torch_package_rule(
        name = name,
        srcs = srcs,
        deps = deps,
        intern = _json_or_empty(intern),
        extern = _json_or_empty(extern),
        mock = _json_or_empty(mock),
        deny = _json_or_empty(deny),
        modules = modules,
        sources = _json_or_empty(sources),
        text = _invert(text, "text"),
        binary = _invert(binary, "binary"),
        data = _data_files(where, data) if data != None else [],
        pickle = _json_or_empty(pickle),
        requires = _strings(requires) if requires != None else [],
        main = main,
        compat = compat,
        seed = seed,
        out = out,
        sign = sign,
        python_path = folders or [],
        **kwargs
    )
