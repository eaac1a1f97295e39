"""Hostile builds (issue 14 §4): inputs that lead out of the workspace through symlinks or
``..``, two builds of one target at once, and a build CLI killed while its export runs."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from build_support import build_in_process, cli_env, make_workspace, write

SECRET = "secret-from-outside-the-workspace"


def _outside(tmp_path: Path) -> Path:
    """A file outside the workspace that no archive may contain."""
    return write(tmp_path / "outside" / "secret.txt", SECRET)


def _no_secret_written(root: Path) -> None:
    out = root / "torchpack-out"
    for path in out.rglob("*") if out.exists() else ():
        assert not path.is_file() or SECRET.encode() not in path.read_bytes(), path
    assert not list(out.rglob("*.pt")) if out.exists() else True


def _refused(monkeypatch: pytest.MonkeyPatch, root: Path, *expected: str) -> None:
    result = build_in_process(monkeypatch, root, "//leak")
    assert result.code == 1, result.out + result.err
    (line,) = [line for line in result.err.splitlines() if line.startswith("error: ")]
    for part in ("leak/BUILD.toml", "target 'leak'", "outside the workspace", *expected):
        assert part in line, line
    assert "Traceback" not in result.err
    _no_secret_written(root)


def test_text_input_symlinked_outside_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = make_workspace(tmp_path / "ws", examples=False)
    (root / "leak").mkdir()
    (root / "leak" / "hostname").symlink_to(_outside(tmp_path))
    write(root / "leak" / "BUILD.toml", '[leak]\ntext = { "leak/hostname.txt" = "hostname" }\n')
    _refused(monkeypatch, root, "key 'text.\"leak/hostname.txt\"'", "leak/hostname", str(tmp_path / "outside" / "secret.txt"))


def test_binary_input_in_a_symlinked_folder_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = make_workspace(tmp_path / "ws", examples=False)
    _outside(tmp_path)
    (root / "leak").mkdir()
    (root / "leak" / "data").symlink_to(tmp_path / "outside", target_is_directory=True)
    write(root / "leak" / "BUILD.toml", '[leak]\nbinary = { "leak/blob.bin" = "data/secret.txt" }\n')
    _refused(monkeypatch, root, "key 'binary.\"leak/blob.bin\"'", "leak/data/secret.txt")


def test_dotdot_input_is_refused_before_anything_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = make_workspace(tmp_path / "ws", examples=False)
    _outside(tmp_path)
    write(root / "leak" / "BUILD.toml", '[leak]\ntext = { "leak/s.txt" = "../../outside/secret.txt" }\n')
    result = build_in_process(monkeypatch, root, "//leak")
    assert result.code == 2 and result.exports == []
    assert "leak/BUILD.toml:2: target 'leak': key 'text.\"leak/s.txt\"'" in result.err
    assert "must be a path inside the workspace" in result.err
    _no_secret_written(root)


def test_factory_reading_through_a_symlink_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = make_workspace(tmp_path / "ws", examples=False)
    (root / "leak").mkdir()
    (root / "leak" / "config.txt").symlink_to(_outside(tmp_path))
    write(root / "leak" / "__init__.py", """
        from pathlib import Path

        def make():
            return Path(__file__).with_name("config.txt").read_text()
    """)
    write(root / "leak" / "BUILD.toml", '[leak.pickle."leak/obj.pkl"]\ncall = "leak:make"\n')
    _refused(monkeypatch, root, "key 'pickle.\"leak/obj.pkl\"'", "leak/config.txt")


def test_interned_module_symlinked_outside_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = make_workspace(tmp_path / "ws", examples=False)
    module = write(tmp_path / "outside" / "stolen.py", f"TEXT = {SECRET!r}\n")
    write(root / "leak" / "__init__.py", "")
    (root / "leak" / "stolen.py").symlink_to(module)
    write(root / "leak" / "BUILD.toml", '[leak]\nintern = "leak.**"\nmodules = ["leak.stolen"]\n')
    _refused(monkeypatch, root, "key 'modules[0]'", "leak/stolen.py")


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_two_concurrent_builds_of_one_target_both_succeed(tmp_path: Path) -> None:
    root = make_workspace(tmp_path / "ws", examples=False)
    barrier = tmp_path / "barrier"
    barrier.mkdir()
    # Each export waits until both have started, so the two builds really overlap.
    write(root / "pair" / "__init__.py", f"""
        import os
        import time

        def make():
            open(os.path.join({str(barrier)!r}, str(os.getpid())), "w").close()
            deadline = time.monotonic() + 120
            while len(os.listdir({str(barrier)!r})) < 2 and time.monotonic() < deadline:
                time.sleep(0.05)
            return {{"answer": 42}}
    """)
    write(root / "pair" / "BUILD.toml", '[pair]\nintern = "pair"\n[pair.pickle."pair/obj.pkl"]\ncall = "pair:make"\n')
    command = [sys.executable, "-m", "torchpack.build", "//pair"]
    builds = [subprocess.Popen(command, cwd=root, env=cli_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    results = [(build.wait(timeout=300), *build.communicate()) for build in builds]
    for code, out, err in results:
        assert code == 0 and "Traceback" not in err, err
    digests = {out.split()[1] for _, out, _ in results}
    assert len(os.listdir(barrier)) == 2 and len(digests) == 1
    output = root / "torchpack-out" / "pair" / "pair.pt"
    assert _sha256(output) in digests
    assert [p.name for p in output.parent.iterdir()] == ["pair.pt"]  # no temporaries left


def _gone(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return True
    return state in ("Z", "X")  # a zombie waiting for a reaper runs nothing


def _wait_gone(pids: list[int], seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while not all(_gone(pid) for pid in pids):
        assert time.monotonic() < deadline, f"still running: {[p for p in pids if not _gone(p)]}"
        time.sleep(0.1)


def _slow_workspace(tmp_path: Path, markers: Path, sleep: float) -> Path:
    """A target whose module, at import, starts a child process and then sleeps."""
    root = make_workspace(tmp_path / "ws", examples=False)
    markers.mkdir()
    write(root / "slow" / "__init__.py", f"""
        import os
        import subprocess
        import sys
        import time

        child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(300)"])
        with open(os.path.join({str(markers)!r}, "pids.tmp"), "w") as file:
            file.write(f"{{os.getpid()}} {{child.pid}}")
        os.replace(os.path.join({str(markers)!r}, "pids.tmp"), os.path.join({str(markers)!r}, "pids"))
        time.sleep({sleep})

        def make():
            return {{"done": True}}
    """)
    write(root / "slow" / "BUILD.toml", '[slow]\nintern = "slow"\n[slow.pickle."slow/x.pkl"]\ncall = "slow:make"\n')
    return root


def _start_and_wait_for_export(root: Path, markers: Path) -> tuple[subprocess.Popen[str], list[int]]:
    build = subprocess.Popen([sys.executable, "-m", "torchpack.build", "//slow"], cwd=root, env=cli_env(),
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not (markers / "pids").exists():
        assert time.monotonic() < deadline and build.poll() is None, build.communicate()
        time.sleep(0.1)
    return build, [int(pid) for pid in (markers / "pids").read_text().split()]


def test_sigterm_to_the_cli_stops_the_export_and_its_children(tmp_path: Path) -> None:
    markers = tmp_path / "markers"
    root = _slow_workspace(tmp_path, markers, sleep=300)
    build, pids = _start_and_wait_for_export(root, markers)
    try:
        build.send_signal(signal.SIGTERM)
        assert build.wait(timeout=60) == 130
        _wait_gone(pids)  # the export and the child its code started: the whole group
    finally:
        build.kill()
        for pid in pids:
            if not _gone(pid):
                os.kill(pid, signal.SIGKILL)
    assert "interrupted" in build.communicate()[1]
    assert not list((root / "torchpack-out").rglob("*.pt*")) if (root / "torchpack-out").exists() else True


def test_export_of_a_killed_cli_writes_no_output_later(tmp_path: Path) -> None:
    markers = tmp_path / "markers"
    # The export would finish 3 s later; SIGKILL gives the CLI no chance to stop it.
    root = _slow_workspace(tmp_path, markers, sleep=3)
    build, pids = _start_and_wait_for_export(root, markers)
    try:
        build.send_signal(signal.SIGKILL)
        build.wait(timeout=60)
        _wait_gone(pids)  # the export noticed its parent died and stopped its group
        time.sleep(4)  # past the moment the export would have written its archive
    finally:
        for pid in pids:
            if not _gone(pid):
                os.kill(pid, signal.SIGKILL)
    out = root / "torchpack-out"
    assert not (out / "slow" / "slow.pt").exists()
    assert not list(out.rglob(".slow.pt.tmp-*")) if out.exists() else True
