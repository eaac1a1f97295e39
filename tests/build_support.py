"""Helpers shared by the build-layer tests (tests/test_build_*.py)."""

from __future__ import annotations

import contextlib
import io
import os
import shutil
import site
import subprocess
import sys
import textwrap
import time
from dataclasses import dataclass, field
from pathlib import Path

from torchpack.build import cli, runner

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = ("tinynet", "textclf", "composed", "graphs")


def make_workspace(path: Path, *, examples: bool = True) -> Path:
    """A fresh workspace at ``path`` (a WORKSPACE file), with a copy of the repository's examples."""
    path.mkdir(parents=True, exist_ok=True)
    (path / "WORKSPACE").write_text("")
    if examples:
        shutil.copytree(REPO / "examples", path / "examples", ignore=shutil.ignore_patterns("__pycache__"))
    return path


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text).lstrip())
    return path


def slow_workspace(tmp_path: Path) -> tuple[Path, Path]:
    """A workspace whose target //slow never finishes exporting, and the marker file its export
    writes its pid into once it started."""
    root = make_workspace(tmp_path / "ws", examples=False)
    write(root / "slow" / "__init__.py", """
        import os
        import time
        from pathlib import Path

        def make():
            Path(__file__).with_name("started").write_text(str(os.getpid()))
            time.sleep(300)
    """)
    write(root / "slow" / "BUILD.toml", '[slow.pickle."slow/x.pkl"]\ncall = "slow:make"\n')
    return root, root / "slow" / "started"


def started_export(marker: Path, process: subprocess.Popen, seconds: float = 120) -> int:
    """The pid of the export that wrote ``marker`` (write_text creates the file before it
    writes the pid: wait for the content), while ``process``, the build, still runs."""
    deadline = time.monotonic() + seconds
    while not (marker.exists() and marker.read_text()):
        assert time.monotonic() < deadline and process.poll() is None, "the export never started"
        time.sleep(0.1)
    return int(marker.read_text())


def relocated_venv(at: Path) -> Path:
    """A venv at another path over the same interpreter and packages, as a CI cache restores."""
    version = f"python{sys.version_info.major}.{sys.version_info.minor}"
    packages = at / "lib" / version / "site-packages"
    packages.mkdir(parents=True)
    (at / "bin").mkdir()
    (at / "pyvenv.cfg").write_text((Path(sys.prefix) / "pyvenv.cfg").read_text() if sys.prefix != sys.base_prefix
                                   else f"home = {Path(sys.base_prefix) / 'bin'}\ninclude-system-site-packages = false\n")
    (at / "bin" / "python").symlink_to(os.path.realpath(sys.executable))
    # The original site-packages, .pth files included, seen through this venv.
    lines = "".join(f"import site; site.addsitedir({entry!r})\n" for entry in site.getsitepackages())
    (packages / "original.pth").write_text(lines)
    return at / "bin" / "python"


def cli_env(**overrides: str) -> dict[str, str]:
    """The environment for a CLI subprocess: torchpack importable from this checkout."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH", "")]))
    env.update(overrides)
    return env


def run_cli(workspace: Path, *args: str, umask: int = 0o022, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "torchpack.build", *args],
        cwd=workspace, env=cli_env(**env), umask=umask, capture_output=True, text=True, timeout=600,
    )


@dataclass
class InProcess:
    """Result of :func:`build_in_process`: exit code, output, and the exports it started."""

    code: int
    out: str
    err: str
    exports: list[list[str]] = field(default_factory=list)


def build_in_process(monkeypatch, cwd: Path, *args: str) -> InProcess:
    """Run the CLI in this process, recording the arguments of every export it starts
    (forked by the zygote or in a fresh interpreter: both go through ``_Processes.run``)."""
    started: list[list[str]] = []
    real_run = runner._Processes.run

    def counting_run(self, action_args, **kw):
        started.append(list(action_args))
        return real_run(self, action_args, **kw)

    monkeypatch.setattr(runner._Processes, "run", counting_run)
    monkeypatch.chdir(cwd)
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = cli.main(list(args))
    monkeypatch.setattr(runner._Processes, "run", real_run)
    return InProcess(code, out.getvalue(), err.getvalue(), started)
