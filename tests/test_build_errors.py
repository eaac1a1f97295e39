"""Builds that fail: one clear message naming file, target and key, no traceback, no partial
output, no stale cache entry; and a build killed half-way (SPEC §3)."""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from build_support import build_in_process, cli_env, make_workspace, slow_workspace, started_export, write


def _files(folder: Path) -> list[str]:
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()) if folder.exists() else []


@pytest.mark.parametrize(
    ("build_toml", "message"),
    [
        ('[model]\nintern = "bad.**"\n\n[model.pickle."m/m.pkl"\ncall = "bad:thing"\n',
         "error: bad/BUILD.toml:4:24: TOML syntax error: Expected ']' at the end of a table declaration"),
        ('[model]\nintern = "bad.**"\nseeds = 3\n',
         "error: bad/BUILD.toml:3: target 'model': key 'seeds': unknown key (did you mean 'seed'?)"),
        ('[model]\nintern = "bad.**"\ndeps = "//bad:other"\n[other]\nout = 5\n',
         "error: bad/BUILD.toml:5: target 'other': key 'out': expected a file name, got an integer (5)"),
        ('[model]\ndeps = ["//bad:other", "//nowhere"]\n[other]\n',
         "error: bad/BUILD.toml:2: target 'model': key 'deps': unknown label //nowhere:nowhere: there is no nowhere/BUILD.toml"),
        ('[model]\ndeps = [":other"]\n[other]\ndeps = [":model"]\n',
         "error: bad/BUILD.toml:2: target 'model': key 'deps': dependency cycle: //bad:model -> //bad:other -> //bad:model"),
    ],
    ids=["syntax", "unknown-key", "wrong-type", "unknown-label", "cycle"],
)
def test_bad_build_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, build_toml: str, message: str) -> None:
    root = make_workspace(tmp_path / "ws", examples=False)
    write(root / "bad" / "BUILD.toml", build_toml)
    result = build_in_process(monkeypatch, root, "//bad:model")
    assert (result.code, result.err.strip()) == (2, message)
    assert result.exports == [] and not (root / "torchpack-out").exists()


def test_failing_exports(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = make_workspace(tmp_path / "ws", examples=False)
    write(root / "bad" / "__init__.py", """
        class Thing:
            pass

        def explode(hidden):
            raise ValueError(f"hidden size must be positive, got {hidden}")

        def thing():
            return Thing()
    """)
    write(root / "bad" / "BUILD.toml", """
        [explode]
        intern = "bad.**"

        [explode.pickle."bad/model.pkl"]
        call = "bad:explode"
        args = { hidden = -3 }

        # Nothing interns, externs or mocks the module `bad` that the pickle needs.
        [unmatched]
        extern = "torch.**"
        pickle."things/thing.pkl" = { call = "bad:thing" }

        [after]
        deps = [":explode"]
    """)
    (root / "torchpack-out" / "bad").mkdir(parents=True)
    stale = write(root / "torchpack-out" / "bad" / "explode.pt", "from an earlier, successful build")

    result = build_in_process(monkeypatch, root, "//bad/...")
    assert len(result.exports) == 2  # the skipped target never started
    errors = sorted(line for line in result.err.splitlines() if line.startswith("error: "))  # finish order varies
    assert errors == [
        "error: bad/BUILD.toml:5: target 'explode': key 'pickle.\"bad/model.pkl\".call': "
        "bad:explode(...) raised ValueError: hidden size must be positive, got -3",
        # Workspace code: the fix is to intern it, in the table that has no intern key yet.
        "error: bad/BUILD.toml:9: target 'unmatched': key 'intern': bad matches no pattern: add \"bad.**\" to "
        "intern of //bad:unmatched (bad/BUILD.toml:9) (import chain: <things.thing.pkl> -> bad)",
        "error: not built because //bad:explode failed",
    ]
    assert result.code == 1 and "Traceback" not in result.err
    states = {line.split()[0]: line.split()[-2] for line in result.out.splitlines()[:-1]}
    assert states == {"//bad:explode": "failed", "//bad:unmatched": "failed", "//bad:after": "skipped"}
    # No partial output, and the stale artifact of the failed target is gone with its cache entry.
    assert not stale.exists()
    assert _files(root / "torchpack-out") == []


def _read_until(fd: int, needle: bytes, deadline: float) -> bytes:
    seen = b""
    while needle not in seen:
        if time.monotonic() > deadline:
            raise AssertionError(f"{needle!r} not seen; got {seen!r}")
        ready, _, _ = select.select([fd], [], [], 0.5)
        if ready:
            seen += os.read(fd, 4096)
    return seen


def test_killed_build_leaves_nothing(tmp_path: Path) -> None:
    root, marker = slow_workspace(tmp_path)
    # stderr on a terminal: the progress bar shows while the export runs.
    master, slave = os.openpty()
    process = subprocess.Popen(
        [sys.executable, "-m", "torchpack.build", "//slow"],
        cwd=root, env=cli_env(), stdout=subprocess.PIPE, stderr=slave, text=True,
    )
    os.close(slave)
    try:
        shown = _read_until(master, b"building //slow:slow", time.monotonic() + 120)
        assert b"[" in shown and b"0/1" in shown
        export_pid = started_export(marker, process)
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=60)
    finally:
        process.kill()
        os.close(master)
    assert process.returncode == 130
    deadline = time.monotonic() + 30
    while True:  # the export was stopped with the build, not orphaned
        try:
            os.kill(export_pid, 0)
        except ProcessLookupError:
            break
        assert time.monotonic() < deadline, "the export process outlived the build"
        time.sleep(0.1)
    assert _files(root / "torchpack-out") == []
