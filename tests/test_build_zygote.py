"""The zygote (torchpack/build/zygote.py): exports forked from one pre-imported interpreter
write the same bytes as exports in fresh interpreters, each from a clean, single-threaded state."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from build_support import build_in_process, cli_env, make_workspace, slow_workspace, started_export, write
from torchpack import PackageImporter
from torchpack.build import runner, zygote

# What an export sees of its process. Run by the factory, so pickled into the archive: equal
# archives mean equal observations. HOME and TMPDIR are each export's own temporary folder.
PROBE = '''
import os
import sys
import tempfile
import threading

import torch

_INSIDE = os.path.join(os.getcwd(), "")
WORKSPACE_MODULES_AT_IMPORT = sorted(
    name for name, module in list(sys.modules.items())
    if (getattr(module, "__file__", None) or "").startswith(_INSIDE)
)


def observe():
    umask = os.umask(0)
    os.umask(umask)
    return {
        "workspace_modules_at_import": WORKSPACE_MODULES_AT_IMPORT,
        "sys_path": list(sys.path),
        "env": {k: v for k, v in sorted(os.environ.items()) if k not in ("HOME", "TMPDIR")},
        "tmpdir_is_home": tempfile.gettempdir() == os.environ["TMPDIR"] == os.environ["HOME"],
        "umask": umask,
        "argv0": sys.argv[0],
        "hash": hash("torchpack"),
        "own_group": os.getpgrp() == os.getpid() == os.getsid(0),
        "stdin_is_devnull": os.path.samestat(os.fstat(0), os.stat(os.devnull)),
        "threads": sorted(thread.name for thread in threading.enumerate()),
        "kernel_threads": len(os.listdir("/proc/self/task")),
        "torch_threads": torch.get_num_threads(),
        "random": torch.rand(3).tolist(),
    }
'''


def _probe_workspace(path: Path) -> Path:
    root = make_workspace(path)
    write(root / "probe" / "__init__.py", PROBE)
    write(root / "probe" / "BUILD.toml", """
        [probe]
        intern = ["probe.**"]
        extern = ["torch.**"]
        seed = 11

        [probe.pickle."probe/seen.pkl"]
        call = "probe:observe"
    """)
    return root


def _spy_zygote(monkeypatch: pytest.MonkeyPatch) -> list[list[str]]:
    forked: list[list[str]] = []
    real_start = zygote.Zygote.start

    def start(self, argv, *args, **kwargs):
        forked.append(list(argv))
        return real_start(self, argv, *args, **kwargs)

    monkeypatch.setattr(zygote.Zygote, "start", start)
    return forked


def _digests(out: str) -> dict[str, str]:
    document = json.loads(out)
    assert document["ok"], document
    return {target["label"]: target["sha256"] for target in document["targets"]}


def test_forked_exports_write_the_bytes_of_fresh_interpreters(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = _probe_workspace(tmp_path / "ws")
    labels = ("//probe", "//examples/tinynet", "//examples/composed")  # composed loads tinynet's archive
    forked = _spy_zygote(monkeypatch)
    with_zygote = build_in_process(monkeypatch, root, "--json", "--jobs", "2", *labels)
    assert with_zygote.code == 0, with_zygote.err
    assert len(forked) == 3  # every export was forked
    fresh = build_in_process(monkeypatch, root, "--json", "--no-cache", "--no-zygote", *labels)
    assert fresh.code == 0, fresh.err
    assert len(forked) == 3 and len(fresh.exports) == 3
    assert _digests(with_zygote.out) == _digests(fresh.out)

    seen = PackageImporter(root / "torchpack-out" / "probe" / "probe.pt").load_pickle("probe", "seen.pkl")
    # Nothing of the workspace was imported before the target's own code, torch was seeded,
    # and the only threads are the export's own (its parent watch): none came from the zygote.
    assert seen["workspace_modules_at_import"] == ["probe"]
    assert seen["threads"] == ["MainThread", "torchpack-parent-watch"] and seen["kernel_threads"] == 2
    assert seen["torch_threads"] == 1 and seen["env"]["PYTHONHASHSEED"] == "0" and seen["umask"] == 0o022
    assert seen["own_group"] and seen["stdin_is_devnull"] and seen["tmpdir_is_home"] and seen["argv0"] == "-c"
    assert seen["sys_path"][0] == str(root.resolve())


def test_check_compares_a_forked_export_with_a_fresh_perturbed_one(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = _probe_workspace(tmp_path / "ws")
    write(root / "probe" / "BUILD.toml", """
        [probe]
        intern = ["probe.**"]
        extern = ["torch.**"]

        [probe.pickle."probe/random.pkl"]
        call = "torch:rand"
        args = { size = [4] }
    """)
    forked = _spy_zygote(monkeypatch)
    result = build_in_process(monkeypatch, root, "--check", "//probe")
    assert result.code == 0 and "checked" in result.out, result.err
    # Two exports, one forked (the build) and one fresh (the perturbed hash seed, time zone
    # and locale are read when an interpreter starts, so it cannot be forked).
    assert len(result.exports) == 2 and len(forked) == 1


def test_the_zygote_imports_torch_without_starting_a_thread(tmp_path: Path) -> None:
    # What the zygote checks before every fork, shown on its own: after the preload (torch,
    # numpy, torchpack) in the exports' environment the kernel lists one thread.
    code = "import os; from torchpack.build import zygote; zygote._preload(); print(len(os.listdir('/proc/self/task')))"
    env = runner.hermetic_env(tmp_path)
    env["PYTHONPATH"] = str(runner._TORCHPACK_HOME)
    done = subprocess.run([sys.executable, "-s", "-c", code], env=env, capture_output=True, text=True, check=True)
    assert done.stdout.split() == ["1"]


def test_a_zygote_with_a_second_thread_refuses_and_exports_run_fresh(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # A thread started before serve(): the zygote must not fork (it exits before saying ready).
    threaded = runner._ZYGOTE_BOOTSTRAP.replace(
        "import sys;", "import sys, threading, time; threading.Thread(target=time.sleep, args=(60,), daemon=True).start();", 1,
    )
    with pytest.raises(zygote.ZygoteUnavailable):
        zygote.Zygote(runner._interpreter(threaded), runner.hermetic_env(tmp_path), tmp_path)

    # A zygote that cannot start (here: exits at once) leaves the exports to fresh interpreters.
    root = _probe_workspace(tmp_path / "ws")
    monkeypatch.setattr(runner, "_ZYGOTE_BOOTSTRAP", "import sys; sys.exit(3)")
    forked = _spy_zygote(monkeypatch)
    result = build_in_process(monkeypatch, root, "--json", "//probe")
    assert result.code == 0 and len(result.exports) == 1 and forked == [], result.err


def _alive(pid: int) -> bool:
    """Running (a zombie, reparented to an init that has not reaped it yet, counts as ended)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (FileNotFoundError, ProcessLookupError):
        return False


def test_a_build_killed_with_sigkill_takes_its_forked_exports_along(tmp_path: Path) -> None:
    root, marker = slow_workspace(tmp_path)
    process = subprocess.Popen(
        [sys.executable, "-m", "torchpack.build", "//slow"], cwd=root, env=cli_env(),
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        export_pid = started_export(marker, process)
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=60)
    finally:
        process.kill()
    # The zygote ends with its input, and the export, reparented, abandons its work.
    deadline = time.monotonic() + 30
    while _alive(export_pid):
        assert time.monotonic() < deadline, "the forked export outlived its build"
        time.sleep(0.1)
    out = root / "torchpack-out" / "slow"
    assert not out.exists() or list(out.iterdir()) == []
