"""A pre-imported export interpreter ("zygote") that forks one fresh child per export.

Most of a small target's export is ``import torch`` (about 2.5 of 3 CPU-seconds on the
benchmark machine); the build CLI pays it once per build with a zygote instead of once per
target.  The zygote is started like an export (:func:`runner.action_command`'s interpreter
flags and :func:`runner.hermetic_env`'s environment, in an empty folder), imports what every export
imports before it reads the workspace (torchpack, its build action, torch, numpy), and then
only forks.  Each child makes itself what a fresh export process is (see :func:`_become_export`)
and runs :func:`torchpack.build.action.main`, so it writes the same bytes.

What a child inherits and a fresh interpreter would not have: the preloaded modules (none
from the workspace: the zygote never has the workspace on ``sys.path``) and nothing else of
the zygote's state, which does no work but importing.  Two differences remain, neither in
an archive's bytes: torch is imported before the workspace is on ``sys.path`` (a workspace
module named like one of torch's own dependencies would shadow it in a fresh export, not
here), and at exit the child does not wait for non-daemon threads the packaged code left
running (the archive is in place by then).  A child whose environment must differ
in a variable read at interpreter start (``--check``'s perturbed build changes
``PYTHONHASHSEED``, ``TZ``, the locale) is not forked: the runner starts a fresh interpreter.

Fork safety: torch is safe to fork while no thread other than the forking one exists (its
intra-op and OpenMP pools start on first use, not on import; ``OMP_NUM_THREADS=1`` is set
before the import).  The zygote starts no thread, runs no tensor code, and checks before
every fork that the kernel lists exactly one thread for it (``/proc/self/task``); if not, it
refuses, the request fails with :class:`ZygoteUnavailable` and the runner falls back to a
fresh interpreter.  Without ``/proc/self/task`` (not Linux) the zygote refuses to start.

Protocol: JSON lines.  The client writes ``{"id", "argv", "env", "cwd", "umask", "log"}``;
the zygote answers ``{"id", "pid"}`` (or ``{"id", "error"}``) at once and ``{"id",
"status"}`` (a wait status) when the child ends.  End of input (the CLI closed it, or died)
ends the zygote; its running children then see their parent change and abandon their work
(:class:`torchpack.build.action._ParentWatch`).

``python -m torchpack.build --no-zygote`` turns it off: every export starts its own interpreter.
"""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

_THREADS = Path("/proc/self/task")


class ZygoteUnavailable(Exception):
    """The zygote could not start, refused a fork, or died: run the export in a fresh interpreter."""


def _single_threaded() -> bool:
    return len(os.listdir(_THREADS)) == 1


def _preload() -> None:
    """Import what :func:`torchpack.build.action.export` imports before any workspace code."""
    import importlib.util

    import torch  # noqa: F401  (action._seed imports it for every export)

    import torchpack.build.action
    import torchpack.build.requirements
    import torchpack.errors
    import torchpack.importer
    import torchpack.package_exporter
    import torchpack.package_importer  # noqa: F401

    if importlib.util.find_spec("numpy") is not None:
        import numpy.random  # noqa: F401  (action._seed seeds it for every export)


def _become_export(request: dict[str, Any]) -> int:
    """In the forked child: become the process the runner would have started, then export."""
    import atexit
    import tempfile
    import traceback

    from torchpack.build import action

    os.setsid()  # own session and process group, as start_new_session=True gives
    devnull = os.open(os.devnull, os.O_RDONLY)
    log = os.open(request["log"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.dup2(devnull, 0)
    os.dup2(log, 1)  # stdout and stderr share one file, as they share one pipe otherwise
    os.dup2(log, 2)
    os.close(devnull)
    os.close(log)
    os.chdir(request["cwd"])
    os.umask(request["umask"])
    os.environ.clear()
    os.environ.update(request["env"])
    tempfile.tempdir = None  # TMPDIR is this export's own
    sys.argv = ["-c", *request["argv"]]  # what the bootstrap leaves in sys.argv
    try:
        code: Any = action.main()
    except SystemExit as exit_:
        code = exit_.code
    except BaseException:  # noqa: BLE001  (what the interpreter does with an uncaught exception)
        traceback.print_exc()
        code = 1
    if not isinstance(code, int):
        if code is not None:
            print(code, file=sys.stderr)
        code = 0 if code is None else 1
    # Interpreter shutdown, minus waiting for threads the packaged code left running: the
    # archive is in place (or removed) by now.
    atexit._run_exitfuncs()
    sys.stdout.flush()
    sys.stderr.flush()
    return code


def serve() -> int:
    """The zygote's main loop (its stdin and stdout are the protocol)."""
    if not _THREADS.is_dir():
        return 3
    _preload()
    if not _single_threaded():
        return 3
    wake_read, wake_write = os.pipe()
    os.set_blocking(wake_read, False)
    os.set_blocking(wake_write, False)
    # A Python-level SIGCHLD handler makes the interpreter write to the wakeup fd, so that
    # select() returns as soon as a child ends.
    signal.set_wakeup_fd(wake_write)
    signal.signal(signal.SIGCHLD, lambda signum, frame: None)
    children: dict[int, str] = {}

    def answer(message: dict[str, Any]) -> None:
        os.write(1, (json.dumps(message) + "\n").encode())

    answer({"ready": True})
    pending = b""
    while True:
        readable, _, _ = select.select([0, wake_read], [], [])
        if wake_read in readable:
            while True:
                try:
                    if not os.read(wake_read, 512):
                        break
                except BlockingIOError:
                    break
            while children:
                pid, status = os.waitpid(-1, os.WNOHANG)
                if pid == 0:
                    break
                answer({"id": children.pop(pid), "status": status})
        if 0 not in readable:
            continue
        chunk = os.read(0, 65536)
        if not chunk:
            # Nothing to flush or release (answers go out unbuffered), and tearing down an
            # interpreter that imported torch takes seconds the build would wait for.
            os._exit(0)
        *lines, pending = (pending + chunk).split(b"\n")
        for line in lines:
            request = json.loads(line)
            if not _single_threaded():
                answer({"id": request["id"], "error": "the zygote has more than one thread"})
                continue
            pid = os.fork()
            if pid == 0:
                code = 1
                try:
                    signal.set_wakeup_fd(-1)
                    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
                    os.close(wake_read)
                    os.close(wake_write)
                    code = _become_export(request)
                finally:
                    os._exit(code)
            children[pid] = request["id"]
            answer({"id": request["id"], "pid": pid})


class ForkedExport:
    """A running export forked by the zygote; waits like :class:`subprocess.Popen`."""

    def __init__(self, request_id: str) -> None:
        self._id = request_id
        self.pid = 0
        self.returncode: int | None = None
        self._started = threading.Event()
        self._ended = threading.Event()
        self._error = ""

    def wait(self, timeout: float | None = None) -> int:
        if not self._ended.wait(timeout):
            raise subprocess.TimeoutExpired(f"export {self._id}", timeout or 0.0)
        assert self.returncode is not None
        return self.returncode


class Zygote:
    """The client side, in the build CLI: start the zygote, ask it for exports."""

    def __init__(self, command: list[str], env: dict[str, str], cwd: Path) -> None:
        self.env = env
        self._lock = threading.Lock()
        self._exports: dict[str, ForkedExport] = {}
        self._next_id = 0
        self._alive = True
        self._process = subprocess.Popen(
            command,
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
            env=env, cwd=str(cwd), start_new_session=True,
        )
        assert self._process.stdout is not None
        if not self._process.stdout.readline().strip():
            self._process.wait()
            raise ZygoteUnavailable(f"the zygote exited with status {self._process.returncode}")
        threading.Thread(target=self._read_answers, name="torchpack-zygote-answers", daemon=True).start()

    def accepts(self, env: dict[str, str]) -> bool:
        """Whether a child can take ``env``: only HOME and TMPDIR (read late) may differ."""
        late = ("HOME", "TMPDIR")
        return {k: v for k, v in env.items() if k not in late} == {k: v for k, v in self.env.items() if k not in late}

    def _read_answers(self) -> None:
        assert self._process.stdout is not None
        for line in self._process.stdout:
            message = json.loads(line)
            with self._lock:
                export = self._exports.get(message["id"])
            if export is None:
                continue
            if "pid" in message:
                export.pid = message["pid"]
                export._started.set()
            elif "error" in message:
                export._error = message["error"]
                export._started.set()
                self._end(export, -1)
            else:
                self._end(export, os.waitstatus_to_exitcode(message["status"]))
        # The zygote is gone: no answer will come for what is still running.
        with self._lock:
            self._alive = False
            left = list(self._exports.values())
        for export in left:
            export._error = export._error or "the zygote died"
            export._started.set()
            self._end(export, -1)

    def _end(self, export: ForkedExport, returncode: int) -> None:
        with self._lock:
            self._exports.pop(export._id, None)
        export.returncode = returncode
        export._ended.set()

    def start(self, argv: list[str], env: dict[str, str], cwd: Path, umask: int, log: Path) -> ForkedExport:
        """Fork an export running ``torchpack.build.action`` with ``argv``; its output goes to ``log``."""
        with self._lock:
            if not self._alive:
                raise ZygoteUnavailable("the zygote died")
            request_id = str(self._next_id)
            self._next_id += 1
            export = ForkedExport(request_id)
            self._exports[request_id] = export
            request = {"id": request_id, "argv": argv, "env": env, "cwd": str(cwd), "umask": umask, "log": str(log)}
            try:
                assert self._process.stdin is not None
                self._process.stdin.write((json.dumps(request) + "\n").encode())
                self._process.stdin.flush()
            except OSError as error:
                self._exports.pop(request_id, None)
                raise ZygoteUnavailable(f"the zygote died: {error}") from error
        export._started.wait()
        if export._error:
            raise ZygoteUnavailable(export._error)
        return export

    def close(self) -> None:
        """End the zygote (its children, if any are left, abandon their work)."""
        if self._process.stdin is not None:
            try:
                self._process.stdin.close()
            except OSError:
                pass
        try:
            self._process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()
