"""torchpack installed the way a user installs it: a wheel of this checkout in a fresh venv.

The venv gets torch and torchpack's other dependencies from the running interpreter's
site-packages through a .pth line (a path listed there does not run that folder's own .pth
files, so an editable install of this checkout there stays out of sight), and torchpack from
the wheel, not editable. Built once per test session, shared by the test files that use it.
"""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
import textwrap
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Installed:
    venv: Path
    wheel: Path
    #: ``git status --porcelain --ignored`` lines that building the wheel added to the checkout.
    tree_changes: list[str]

    @property
    def python(self) -> Path:
        return self.venv / "bin" / "python"

    def env(self, **overrides: str) -> dict[str, str]:
        """An environment where ``python`` and ``torchpack`` are the venv's, and nothing else
        puts this checkout on sys.path."""
        env = {key: value for key, value in os.environ.items() if key not in ("PYTHONPATH", "PYTHONHOME")}
        env["PATH"] = os.pathsep.join([str(self.venv / "bin"), env.get("PATH", "")])
        env["NO_COLOR"] = "1"
        env.update(overrides)
        return env

    def run(self, cwd: Path, *command: str, **env: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(list(command), cwd=cwd, env=self.env(**env), capture_output=True, text=True, timeout=600)


def _git_status() -> set[str]:
    result = subprocess.run(
        ["git", "status", "--porcelain", "--ignored", "--untracked-files=all"],
        cwd=REPO, capture_output=True, text=True, check=True,
    )
    # Bytecode is written by whatever imports the checkout, this test run included.
    return {line for line in result.stdout.splitlines() if "__pycache__" not in line and ".pytest_cache" not in line}


def installed_torchpack(base: Path) -> Installed:
    """The venv under ``base`` (a session's temporary folder), created on first use."""
    venv, wheels = base / "installed-venv", base / "wheels"
    if not venv.exists():
        before = _git_status()
        subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(wheels), str(REPO)],
                       check=True, capture_output=True, timeout=600)
        subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=600)
        purelib = Path(sysconfig.get_paths(vars={"base": str(venv), "platbase": str(venv)})["purelib"])
        (purelib / "host_site_packages.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
        [wheel] = wheels.glob("torchpack-*.whl")
        subprocess.run([sys.executable, "-m", "pip", "--python", str(venv / "bin" / "python"), "install", "-q",
                        "--no-deps", "--no-index", str(wheel)], check=True, capture_output=True, timeout=600)
        (base / "tree_changes.txt").write_text("\n".join(sorted(_git_status() - before)))
    [wheel] = wheels.glob("torchpack-*.whl")
    changes = [line for line in (base / "tree_changes.txt").read_text().splitlines() if line]
    return Installed(venv, wheel, changes)


def write_tree(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text).lstrip())
    return root


#: A workspace of one's own: `mylab`, a small CNN, marked by an empty [tool.torchpack] table.
MYLAB = {
    "pyproject.toml": """
        [project]
        name = "mylab"
        version = "0.1"

        [tool.torchpack]
    """,
    "mylab/__init__.py": "",
    "mylab/cnn.py": """
        import torch


        class Net(torch.nn.Module):
            def __init__(self):
                super().__init__()
                self.body = torch.nn.Sequential(torch.nn.Conv2d(1, 2, 3), torch.nn.ReLU())
                self.head = torch.nn.Linear(2, 3)

            def forward(self, x):
                return self.head(self.body(x).mean((2, 3)))


        def build():
            return Net().eval()
    """,
    "mylab/BUILD.toml": """
        [cnn]
        intern = ["mylab.**"]
        extern = "torch.**"
        seed = 1

        [cnn.pickle."mylab/model.pkl"]
        call = "mylab.cnn:build"
    """,
}
