"""The `_builder` of `torch_package`: one export, run exactly as `python -m torchpack.build` runs it.

Usage (written by the rule, not by hand)::

    builder --archive OUT.pt --digest OUT.pt.sha256 --extern-modules OUT.pt.extern_modules \\
            --build-file PKG/BUILD.bazel --workspace ROOT --typed-definition TYPED.json -- ACTION-ARGS...

(the rule writes these arguments into a file and passes ``@FILE``, one argument per line).
``ACTION-ARGS`` go to ``torchpack.build.action`` (``--definition DEF.json --output OUT.pt
[--dep LABEL=ARCHIVE ...] [--python-path FOLDER ...]``).  ``TYPED.json`` is the target as
the rule wrote it: attribute values as typed, and ``data`` as the files the macro's glob
matched.  The builder first writes the canonical ``DEF.json`` from it with the CLI's own
code (:func:`torchpack.build.schema.target_from_definition`: requirements normalised,
``data`` files named as binary records below the python-path folders), so that Bazel and
the CLI hold the one definition of both.  The export runs in a fresh
interpreter (this one's ``sys.executable``: the registered Python toolchain) started the way
the CLI starts it, with the CLI's sanitised environment
(:func:`torchpack.build.runner.hermetic_env`), umask 022 and the workspace as working
directory, so that Bazel and the CLI write the same bytes.  As Bazel's persistent worker
(``builder --persistent_worker``: :func:`_serve_as_worker`, persistent_worker.py) it forks each
export from a zygote instead, as the CLI does, in a folder of the request's declared inputs;
the archive and the error text are the same.  After a
successful export the archive's SHA-256 and its ``.data/extern_modules`` record are written
next to it for the ``TorchPackageInfo`` provider.

``builder --sign --archive OUT.pt --signature OUT.pt.sig --target LABEL`` is the signing
action of a ``sign = True`` target: it signs the archive with the Ed25519 key file that
``$TORCHPACK_SIGN_KEY`` names (``--action_env=TORCHPACK_SIGN_KEY=/abs/path``), so the key
is never an input of the build, and the archive itself is not changed.

On failure the builder prints the action's one-line error in Bazel's terms (the BUILD.bazel
file, the target's label and the attribute to change, e.g. ``error: pkg/BUILD.bazel:
//pkg:name: attribute 'requires[0]': ...``; Bazel's own ``ERROR: .../BUILD.bazel:LINE:COLUMN``
line above it locates the target) and exits with the action's status; no traceback unless
the export itself crashed.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib
import json
import os
import re
import shutil
import sys
import tempfile
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from torchpack.build.zygote import Zygote


def _parse(argv: list[str]) -> tuple[argparse.Namespace, list[str]]:
    if "--" not in argv:
        raise SystemExit("builder: expected '--' before the arguments of torchpack.build.action")
    split = argv.index("--")
    parser = argparse.ArgumentParser(prog="torch_package builder")
    parser.add_argument("--archive", required=True, type=Path)
    parser.add_argument("--digest", required=True, type=Path)
    parser.add_argument("--extern-modules", required=True, type=Path)
    parser.add_argument("--build-file", required=True)
    parser.add_argument("--workspace", required=True, type=Path)
    parser.add_argument("--typed-definition", required=True, type=Path)
    return parser.parse_args(argv[:split]), argv[split + 1 :]


def _python_path(action_args: list[str]) -> tuple[str, ...]:
    """The ``--python-path`` folders of the action, as the action reads them."""
    from torchpack.build.workspace import flag_python_path

    return flag_python_path(arg.partition("=")[2] for arg in action_args if arg.startswith("--python-path="))


def _definition_output(action_args: list[str]) -> str:
    """The action's ``--definition`` file: an output of the action, written by the builder."""
    return action_args[action_args.index("--definition") + 1]


def _write_definition(root: Path, typed: Path, action_args: list[str]) -> str | None:
    """Writes the action's ``--definition`` file from the typed one (both relative to
    ``root``); the error, if any, naming the typed file as the rule wrote its path."""
    from torchpack.build.schema import BuildFileError, target_from_definition

    try:
        target = target_from_definition(
            json.loads((root / typed).read_text(encoding="utf-8")), file=str(typed), data_python_path=_python_path(action_args)
        )
    except (OSError, ValueError, BuildFileError) as exc:
        return f"error: {exc}\n"
    (root / _definition_output(action_args)).write_text(target.definition_json(), encoding="utf-8")
    return None


def _extern_modules(archive: Path) -> str:
    with zipfile.ZipFile(archive) as zf:
        for name in zf.namelist():
            if name == ".data/extern_modules" or name.endswith("/.data/extern_modules"):
                return zf.read(name).decode("utf-8")
    return ""


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _point_at_build_file(log: str, build_file: str, action_args: list[str], typed: Path) -> str:
    """The action's error lines in the terms of the Bazel target.

    The action names the BUILD.toml the label would live in (export errors; a line number
    there would be that file's, not this one's) or the DEF.json (definition errors), then the
    target's name and the key.  Under Bazel the target is declared in ``build_file``, and its
    keys are the attributes of ``torch_package``.
    """
    package = build_file.rpartition("/")[0]
    wrong = [f"{package}/BUILD.toml" if package else "BUILD.toml", str(typed)]
    if "--definition" in action_args[:-1]:
        wrong.append(_definition_output(action_args))
    located = re.compile(
        rf"^error: (?:{'|'.join(map(re.escape, wrong))})(?::\d+)*: (?:target '([^']+)': )?(?:key ('[^']*'): )?",
        re.MULTILINE,
    )

    def in_bazel_terms(match: re.Match[str]) -> str:
        name, key = match.groups()
        label = f"//{package}:{name}: " if name else ""
        return f"error: {build_file}: {label}" + (f"attribute {key}: " if key else "")

    log = _MISSING_MODULE.sub(_srcs_hint(_python_path(action_args)[0]), located.sub(in_bazel_terms, log))
    log = _TOML_TABLE.sub(r'\1 = {"\2": "\3"}', log)
    return log if log.endswith("\n") or not log else log + "\n"


# The action suggests entries in BUILD.toml's inline-table syntax; Starlark writes a dict.
_TOML_TABLE = re.compile(r'\b(\w+) = \{ "([^"]*)" = "([^"]*)" \}')

# The sandbox holds only declared files: a workspace module left out of `srcs` is simply
# not there, and Python says no more than this.
_MISSING_MODULE = re.compile(r"No module named '([A-Za-z_][\w.]*)'(?!;)")


def _srcs_hint(folder: str) -> Callable[[re.Match[str]], str]:
    """The missing-module hint, with the file's path below the first python-path ``folder``."""
    prefix = f"{folder}/" if folder not in ("", ".") else ""

    def hint(match: re.Match[str]) -> str:
        path = prefix + match.group(1).replace(".", "/")
        return (f"{match.group(0)}; under Bazel the export sees only declared files: if it is workspace code, "
                f"list {path}.py (or {path}/__init__.py) in srcs")

    return hint


def _sign(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="torch_package builder --sign")
    parser.add_argument("--archive", required=True)
    parser.add_argument("--signature", required=True)
    parser.add_argument("--target", required=True)
    options = parser.parse_args(argv)
    from torchpack._archive_reader import open_archive
    from torchpack._signing import load_private_key, sign_archive
    from torchpack.build.cli import SIGN_KEY_VARIABLE
    from torchpack.errors import TorchpackError

    key_file = os.environ.get(SIGN_KEY_VARIABLE)
    if not key_file:
        print(
            f"error: {options.target}: sign = True needs the key: build with "
            f"--action_env={SIGN_KEY_VARIABLE}=/absolute/path/to/key",
            file=sys.stderr,
        )
        return 2
    try:
        sign_archive(open_archive(options.archive), load_private_key(key_file), options.signature)
    except TorchpackError as error:
        print(f"error: {options.target}: cannot sign {options.archive}: {error}", file=sys.stderr)
        return 1
    return 0


def _expand_flagfile(argv: list[str], root: Path) -> list[str]:
    """The rule passes its arguments in a file (``@FILE``, one per line), as workers need."""
    if len(argv) == 1 and argv[0].startswith("@"):
        return (root / argv[0][1:]).read_text(encoding="utf-8").splitlines()
    return argv


def _package(options: argparse.Namespace, action_args: list[str], root: Path, zygote: Zygote | None) -> tuple[int, str]:
    """One export; returns its exit status and the error text to show (empty on success).

    The rule's paths are relative to ``root``: the execroot (or the sandbox Bazel made), or the
    persistent worker's folder of the request's declared inputs.
    """
    from torchpack.build import runner

    invalid = _write_definition(root, options.typed_definition, action_args)
    if invalid:
        return 2, _point_at_build_file(invalid, options.build_file, action_args, options.typed_definition)
    workspace = (root / options.workspace).resolve()
    scratch = Path(tempfile.mkdtemp(prefix="torchpack-action-"))
    try:
        (scratch / "home").mkdir()
        # The same command line (or zygote child) and environment as `python -m torchpack.build` uses.
        returncode, log = runner.run_export(
            [*action_args, "--workspace", str(workspace)],
            env=runner.hermetic_env(scratch / "home"),
            cwd=workspace,
            umask=0o022,
            log=scratch / "log",
            zygote=zygote,
        )
    finally:
        shutil.rmtree(scratch, ignore_errors=True)

    if returncode != 0:
        message = _point_at_build_file(log, options.build_file, action_args, options.typed_definition)
        if not log.strip():
            message += f"error: {options.build_file}: the export exited with status {returncode}\n"
        return (returncode if returncode > 0 else 1), message

    archive = root / options.archive
    (root / options.digest).write_text(_sha256(archive) + "\n", encoding="utf-8")
    (root / options.extern_modules).write_text(_extern_modules(archive), encoding="utf-8")
    return 0, ""


def _serve_as_worker() -> int:
    """Bazel's persistent worker (``--persistent_worker``): one zygote, one forked export per request.

    The zygote (torchpack/build/zygote.py, as the CLI uses it) imports torch once; each request
    is a fresh fork of it that becomes the process the one-shot builder would start, so a
    request sees nothing of an earlier one.  The worker is this builder's runfiles and this
    interpreter: Bazel starts a new worker when any of them changes (they are its tool files,
    part of the worker's key), so a worker never serves another torchpack.
    """
    import persistent_worker

    missing = _missing_torchpack()
    if missing:
        return persistent_worker.serve(lambda request: (2, missing))
    from torchpack.build import runner
    from torchpack.build.zygote import ZygoteUnavailable

    execroot = Path.cwd()
    zygote_home = Path(tempfile.mkdtemp(prefix="torchpack-zygote-"))
    try:
        zygote: Zygote | None = runner.start_zygote(zygote_home)
    except (OSError, ZygoteUnavailable) as error:
        print(f"torch_package worker: no zygote ({error}); each export starts its own interpreter", file=sys.stderr)
        zygote = None

    def handle(request: persistent_worker.WorkRequest) -> tuple[int, str]:
        try:
            options, action_args = _parse(_expand_flagfile(request.arguments, execroot))
        except SystemExit as error:
            return 2, f"{error.code}\n" if isinstance(error.code, str) else "torch_package builder: bad arguments\n"
        outputs = [str(path) for path in (options.archive, options.digest, options.extern_modules)]
        outputs.append(_definition_output(action_args))
        try:
            tree = persistent_worker.declared_tree(execroot, request.inputs)
        except persistent_worker.ProtocolError as error:
            return 2, f"torch_package worker: {error}\n"
        try:
            for output in outputs:
                (tree / output).parent.mkdir(parents=True, exist_ok=True)
            code, message = _package(options, action_args, tree, zygote)
            if code == 0:
                persistent_worker.move_outputs(tree, execroot, outputs)
            return code, message
        finally:
            shutil.rmtree(tree, ignore_errors=True)

    try:
        return persistent_worker.serve(handle)
    finally:
        if zygote is not None:
            zygote.close()
        shutil.rmtree(zygote_home, ignore_errors=True)


def _missing_torchpack() -> str:
    """The error of an interpreter that cannot import torchpack's build layer, else ''."""
    try:
        importlib.import_module("torchpack.build.runner")
    except ImportError as exc:
        return f"error: the torch_package builder cannot import torchpack.build ({exc})\n"
    return ""


def main(argv: list[str]) -> int:
    if "--persistent_worker" in argv:
        return _serve_as_worker()
    argv = _expand_flagfile(argv, Path.cwd())
    if argv[:1] == ["--sign"]:
        return _sign(argv[1:])
    options, action_args = _parse(argv)
    missing = _missing_torchpack()
    if missing:
        sys.stderr.write(missing)
        return 2
    code, message = _package(options, action_args, Path.cwd(), None)
    sys.stderr.write(message)
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
