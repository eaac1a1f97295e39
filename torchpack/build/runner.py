"""Running exports: one hermetic subprocess per target, in dependency order, ``--jobs`` at a time."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import zipfile
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import IO, Any, Literal

from .._record_files import signature_path
from ..errors import TorchpackError
from .cache import ActionCache, remove_dead_temporaries, temporary_prefix
from .graph import BuildGraph
from .labels import Label
from .targets import Target
from .workspace import Workspace
from .zygote import ForkedExport, Zygote, ZygoteUnavailable

State = Literal["built", "cached", "failed", "skipped"]

# Run as `python -s -P -c BOOTSTRAP HOME ARGS...`, not `-I`: -I implies -E, which would make
# the interpreter ignore PYTHONHASHSEED.  The environment is built from scratch below, so -E
# would add nothing else; -s drops the user site and -P the cwd from sys.path.  The bootstrap
# imports the action from the torchpack that runs this CLI, then leaves sys.path to the action.
_BOOTSTRAP = (
    "import sys; home = sys.argv.pop(1); sys.path.insert(0, home); "
    "import torchpack.build.action as action; sys.path.remove(home); sys.exit(action.main())"
)
_TORCHPACK_HOME = str(Path(__file__).resolve().parents[2])
# The same, for the zygote (see zygote.py), which then forks one export per request.
_ZYGOTE_BOOTSTRAP = (
    "import sys; home = sys.argv.pop(1); sys.path.insert(0, home); "
    "import torchpack.build.zygote as zygote; sys.path.remove(home); sys.exit(zygote.serve())"
)


def action_command(action_args: list[str]) -> list[str]:
    """The command line that runs ``torchpack.build.action`` with ``action_args`` hermetically.

    Shared with the Bazel rule's builder, so both engines run exports the same way.
    """
    return [*_interpreter(_BOOTSTRAP), *action_args]


def _interpreter(bootstrap: str) -> list[str]:
    return [sys.executable, "-s", *(["-P"] if sys.version_info >= (3, 11) else []), "-c", bootstrap, _TORCHPACK_HOME]


def start_zygote(home: Path, *, scan_cache: Path | None = None) -> Zygote:
    """A zygote for exports whose environment is :func:`hermetic_env` (``home``: its own folder).

    Shared with the Bazel rule's persistent worker.  Its working directory is ``home``, not a
    workspace: without -P (Python < 3.11) the working directory is on sys.path while torch is
    imported.  Raises :class:`ZygoteUnavailable` (or OSError) when it cannot start.
    """
    return Zygote(_interpreter(_ZYGOTE_BOOTSTRAP), hermetic_env(home, scan_cache=scan_cache), home)


def run_export(
    action_args: list[str], *, env: dict[str, str], cwd: Path, umask: int, log: Path, zygote: Zygote | None,
) -> tuple[int, str]:
    """One export, forked by ``zygote`` when it can take ``env`` (else a fresh interpreter):
    its exit status and output.  The Bazel rule's builder runs its exports through this."""
    return _Processes().run(action_args, env=env, cwd=cwd, umask=umask, log=log, zygote=zygote)


@dataclass(frozen=True)
class Options:
    jobs: int = 1
    use_cache: bool = True
    check: bool = False
    verbose: bool = False
    #: Fork exports from a pre-imported interpreter (zygote.py) instead of starting each afresh.
    zygote: bool = True
    #: The Ed25519 private key that signs targets with ``sign = true``; read by this process
    #: only, never handed to an export.
    sign_key: Any = None


@dataclass
class TargetResult:
    label: Label
    output: Path
    state: State
    sha256: str | None = None
    size: int | None = None
    seconds: float = 0.0
    error: str | None = None
    checked: bool = False
    log: str = ""


@dataclass(frozen=True)
class _Outcome:
    error: str | None  # None: the archive is in place
    log: str
    inputs: list[str] = field(default_factory=list)
    distributions: list[str] = field(default_factory=list)
    sha256: str = ""
    size: int = 0


def hermetic_env(home: Path, *, perturbed: bool = False, scan_cache: Path | None = None) -> dict[str, str]:
    """The complete environment of an export; ``perturbed`` is --check's second build.

    ``scan_cache`` keeps torchpack's parsed-imports cache across exports (it is keyed by source
    digest, so it cannot change an archive); without it the cache dies with ``home``.
    """
    env = {
        "PATH": os.defpath,
        "HOME": str(home),
        "TMPDIR": str(home),
        "PYTHONHASHSEED": "0",
        "TZ": "UTC",
        "LC_ALL": "C.UTF-8",
        "LANG": "C.UTF-8",
        # Builds must not write __pycache__ folders into the (possibly read-only) source tree.
        "PYTHONDONTWRITEBYTECODE": "1",
        # The number of threads changes the order of floating-point reductions in factories.
        "OMP_NUM_THREADS": "1",
        "MKL_NUM_THREADS": "1",
    }
    if scan_cache is not None:
        env["TORCHPACK_CACHE_DIR"] = str(scan_cache)
    if "SOURCE_DATE_EPOCH" in os.environ:
        env["SOURCE_DATE_EPOCH"] = os.environ["SOURCE_DATE_EPOCH"]
    if perturbed:
        # A POSIX TZ string needs no tz database: UTC+13:45, as far from UTC as it gets.
        env.update(PYTHONHASHSEED="4242", TZ="XST-13:45", LC_ALL="C", LANG="C")
    return env


class _Processes:
    """The export subprocesses in flight, so that an interrupted build can stop them all.

    Each export runs in its own session (so its own process group): a Ctrl-C on the terminal
    reaches only the CLI, which then stops every export group, children of factories included.
    """

    #: Seconds an export gets to remove its temporary after SIGTERM, before SIGKILL.
    GRACE = 5.0

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._running: set[subprocess.Popen[bytes] | ForkedExport] = set()
        self.stopping = False

    def run(
        self, action_args: list[str], *, env: dict[str, str], cwd: Path, umask: int, log: Path, zygote: Zygote | None,
    ) -> tuple[int, str]:
        """Run the export; return its exit status and output (stdout and stderr, interleaved).

        Forked by ``zygote`` when it can take ``env``, else (or when it fails) a fresh interpreter.
        """
        with self._lock:
            if self.stopping:
                return -1, "cancelled"
            process: subprocess.Popen[bytes] | ForkedExport | None = None
            if zygote is not None and zygote.accepts(env):
                try:
                    process = zygote.start(action_args, env, cwd, umask, log)
                except ZygoteUnavailable:
                    process = None
            if process is None:
                process = subprocess.Popen(
                    action_command(action_args), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                    start_new_session=True, env=env, cwd=str(cwd), umask=umask, stdin=subprocess.DEVNULL,
                )
            self._running.add(process)
        try:
            if isinstance(process, ForkedExport):
                process.wait()
                output = log.read_bytes() if log.exists() else b""
            else:
                output, _ = process.communicate()
        finally:
            with self._lock:
                self._running.discard(process)
        assert process.returncode is not None
        return process.returncode, output.decode("utf-8", "replace")

    @staticmethod
    def _signal_group(process: subprocess.Popen[bytes] | ForkedExport, signum: int) -> None:
        try:
            os.killpg(process.pid, signum)  # the session leader's pid is its group id
        except (ProcessLookupError, PermissionError):
            pass

    def stop(self) -> None:
        with self._lock:
            self.stopping = True
            running = list(self._running)
        for process in running:
            self._signal_group(process, signal.SIGTERM)  # the action removes its temporary on SIGTERM
        deadline = time.monotonic() + self.GRACE
        for process in running:
            try:
                process.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                pass
            # Whatever is left of the group (a factory's child, an export ignoring SIGTERM).
            self._signal_group(process, signal.SIGKILL)
            process.wait()


def _run_action(
    processes: _Processes,
    workspace: Workspace,
    target: Target,
    output: Path,
    deps: dict[Label, Path],
    *,
    perturbed: bool,
    verbose: bool,
    scan_cache: Path,
    zygote: Zygote | None,
) -> _Outcome:
    scratch = Path(tempfile.mkdtemp(prefix="torchpack-action-"))
    try:
        definition = scratch / "DEF.json"
        definition.write_text(target.definition_json(), encoding="utf-8")
        report = scratch / "report.json"
        home = scratch / "home"
        home.mkdir()
        action_args = [
            "--definition", str(definition),
            "--workspace", str(workspace.root),
            "--output", str(output),
            *[f"--dep={label}={archive}" for label, archive in deps.items()],
            "--report", str(report),
            "--confine",
            *[f"--python-path={folder or '.'}" for folder in workspace.python_path],
            *(["--verbose"] if verbose else []),
        ]
        returncode, log = processes.run(
            action_args,
            env=hermetic_env(home, perturbed=perturbed, scan_cache=scan_cache),
            cwd=home if perturbed else workspace.root,
            umask=0o077 if perturbed else 0o022,
            log=scratch / "log",
            zygote=zygote,
        )
        where = f"{target.label.build_file}: target '{target.label.name}'"
        try:
            data = json.loads(report.read_text(encoding="utf-8"))
            if data["error"] is not None:
                return _Outcome(data["error"], log)
            outcome = _Outcome(None, log, data["inputs"], data["distributions"], data["sha256"], data["size"])
        except (OSError, ValueError, KeyError, TypeError):
            # No report: the interpreter died (killed, crashed) before writing one.
            tail = log.strip().splitlines()[-1:] or [f"exit status {returncode}"]
            return _Outcome(f"{where}: export process failed: {tail[0]}", log)
        if returncode != 0:
            return _Outcome(f"{where}: export process exited with status {returncode}", log)
        return outcome
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def describe_differences(first: Path, second: Path) -> str:
    """Name the ZIP records whose bytes or metadata differ between two archives."""
    try:
        with zipfile.ZipFile(first) as a, zipfile.ZipFile(second) as b:
            infos_a = {info.filename: info for info in a.infolist()}
            infos_b = {info.filename: info for info in b.infolist()}
            problems = [f"{name} (only in one build)" for name in sorted(infos_a.keys() ^ infos_b.keys())]
            for name in sorted(infos_a.keys() & infos_b.keys()):
                x, y = infos_a[name], infos_b[name]
                if a.read(name) != b.read(name):
                    problems.append(f"{name} (content)")
                elif (x.date_time, x.external_attr, x.compress_type, x.extra, x.create_system) != (
                    y.date_time, y.external_attr, y.compress_type, y.extra, y.create_system,
                ):
                    problems.append(f"{name} (metadata)")
            if not problems and list(infos_a) != list(infos_b):
                problems.append("record order")
    except (OSError, zipfile.BadZipFile) as exc:
        return f"cannot compare the archives as ZIP files: {exc}"
    return ", ".join(problems) if problems else "ZIP framing (local headers, padding or central directory)"


class Builder:
    """Builds a graph's targets; calls ``on_result`` as each one finishes."""

    def __init__(
        self,
        workspace: Workspace,
        graph: BuildGraph,
        cache: ActionCache,
        options: Options,
        on_result: Callable[[TargetResult], None],
        progress: Progress | None = None,
    ) -> None:
        self.workspace, self.graph, self.cache, self.options = workspace, graph, cache, options
        self.on_result, self.progress = on_result, progress
        self.results: dict[Label, TargetResult] = {}
        self.processes = _Processes()
        self._zygote: Zygote | None = None
        self._zygote_home: str | None = None
        self._zygote_tried = False  # started once at most: not again after a failure or the end
        self._zygote_lock = threading.Lock()

    def output(self, label: Label) -> Path:
        return self.workspace.output_of(label.package, self.graph.targets[label].out)

    def run(self) -> list[TargetResult]:
        pending = list(self.graph.order)
        running: dict[Future[TargetResult], tuple[Label, float, float | None]] = {}
        with ThreadPoolExecutor(max_workers=max(1, self.options.jobs)) as pool:
            try:
                while pending or running:
                    for label in list(pending):
                        if len(running) >= max(1, self.options.jobs):
                            break
                        deps = self.graph.targets[label].deps
                        if not all(dep in self.results for dep in deps):
                            continue
                        pending.remove(label)
                        started = self._start(label, pool)
                        if isinstance(started, TargetResult):
                            self._finish(started)
                        else:
                            future, expected = started
                            running[future] = (label, time.monotonic(), expected)
                    if not running:
                        continue
                    done, _ = wait(running, timeout=0.1, return_when=FIRST_COMPLETED)
                    for future in done:
                        running.pop(future)
                        self._finish(future.result())
                    if self.progress is not None:
                        self.progress.draw(len(self.results), len(self.graph.order), list(running.values()))
            except BaseException:
                # Ctrl-C, SIGTERM (raised as KeyboardInterrupt by the CLI) or a bug: no export
                # may outlive the build.
                self.processes.stop()
                raise
            finally:
                self._close_zygote()
        return [self.results[label] for label in self.graph.order]

    def _zygote_for_exports(self) -> Zygote | None:
        """The zygote, started by the first export that needs it (a no-op build starts none);
        None when turned off or when it cannot start (exports then start their own interpreter)."""
        if not self.options.zygote:
            return None
        with self._zygote_lock:
            if not self._zygote_tried:
                self._zygote_tried = True
                self._zygote_home = tempfile.mkdtemp(prefix="torchpack-zygote-")
                try:
                    self._zygote = start_zygote(Path(self._zygote_home), scan_cache=self.cache.folder / "scan")
                except (OSError, ZygoteUnavailable):
                    self._zygote = None
            return self._zygote

    def _close_zygote(self) -> None:
        with self._zygote_lock:
            self._zygote_tried = True
            if self._zygote is not None:
                self._zygote.close()
            if self._zygote_home is not None:
                shutil.rmtree(self._zygote_home, ignore_errors=True)
            self._zygote, self._zygote_home = None, None

    def _finish(self, result: TargetResult) -> None:
        if result.state in ("built", "cached"):
            result = self._sign(result)
        self.results[result.label] = result
        if self.progress is not None:
            self.progress.clear()
        self.on_result(result)

    def _sign(self, result: TargetResult) -> TargetResult:
        """Write ``<out>.sig`` for a target with ``sign = true`` (cached archives are signed
        again: the key may have changed); drop a stale one otherwise. The archive is untouched."""
        sidecar = Path(signature_path(result.output))
        if not self.graph.targets[result.label].sign:
            sidecar.unlink(missing_ok=True)
            return result
        # Imported here: a build that signs nothing (a no-op rebuild) does without them.
        from .._archive_reader import open_archive
        from .._signing import sign_archive

        try:
            sign_archive(open_archive(result.output), self.options.sign_key)
        except (TorchpackError, OSError) as error:
            label = result.label
            message = f"{label.build_file}: target '{label.name}': cannot sign {result.output}: {error}"
            return replace(result, state="failed", error=message)
        return result

    def _start(self, label: Label, pool: ThreadPoolExecutor) -> TargetResult | tuple[Future[TargetResult], float | None]:
        target = self.graph.targets[label]
        output = self.output(label)
        failed = [dep for dep in target.deps if self.results[dep].state in ("failed", "skipped")]
        if failed:
            return TargetResult(label, output, "skipped", error=f"not built because {failed[0]} failed")
        dep_digests = {dep: self.results[dep].sha256 or "" for dep in target.deps}
        if self.options.use_cache and not self.options.check:
            hit = self.cache.lookup(target, dep_digests, output)
            if hit is not None:
                return TargetResult(label, output, "cached", hit.sha256, hit.size, 0.0)
        # The archive on disk is stale from now on: if this build fails, no artifact remains.
        # Temporaries are removed only when their export died; a live one is another build's.
        output.unlink(missing_ok=True)
        Path(signature_path(output)).unlink(missing_ok=True)
        remove_dead_temporaries(output.parent, temporary_prefix(output))
        future = pool.submit(self._build, target, output, dep_digests)
        return future, self.cache.previous_seconds(label)

    def _action(self, target: Target, output: Path, deps: dict[Label, Path], *, perturbed: bool) -> _Outcome:
        return _run_action(
            self.processes, self.workspace, target, output, deps,
            perturbed=perturbed, verbose=self.options.verbose, scan_cache=self.cache.folder / "scan",
            zygote=self._zygote_for_exports(),
        )

    def _build(self, target: Target, output: Path, dep_digests: dict[Label, str]) -> TargetResult:
        started = time.monotonic()
        deps = {dep: self.output(dep) for dep in target.deps}
        label = target.label
        if self.options.check:
            # Two independent builds at once, the second in a perturbed environment writing
            # under another name in another folder.
            with tempfile.TemporaryDirectory(prefix="torchpack-check-") as scratch, ThreadPoolExecutor(1) as side:
                other_output = Path(scratch) / f"check-{label.name}-{os.getpid()}.pt"
                other = side.submit(self._action, target, other_output, deps, perturbed=True)
                outcome = self._action(target, output, deps, perturbed=False)
                second = other.result()
                if outcome.error is None and second.error is not None:
                    outcome = second
                elif outcome.error is None and outcome.sha256 != second.sha256:
                    differences = describe_differences(output, other_output)
                    message = f"{label.build_file}: target '{label.name}': not reproducible: two builds differ in {differences}"
                    outcome = _Outcome(message, outcome.log + second.log)
        else:
            outcome = self._action(target, output, deps, perturbed=False)
        seconds = time.monotonic() - started
        if outcome.error is not None:
            output.unlink(missing_ok=True)
            self.cache.forget(label)
            return TargetResult(label, output, "failed", seconds=seconds, error=outcome.error, log=outcome.log)
        # The scan cache is the builder's own state, not an input of the target.
        inputs = [p for p in outcome.inputs if not (self.workspace.root / p).resolve().is_relative_to(self.cache.folder)]
        self.cache.store(target, dep_digests, inputs, outcome.distributions, output, outcome.sha256, outcome.size, seconds)
        return TargetResult(label, output, "built", outcome.sha256, outcome.size, seconds, checked=self.options.check, log=outcome.log)


@dataclass
class Progress:
    """A one-line progress bar on a terminal, shown only while an export runs for over a second."""

    stream: IO[str]
    width: int = 24
    shown: bool = field(default=False, init=False)

    def draw(self, done: int, total: int, running: list[tuple[Label, float, float | None]]) -> None:
        now = time.monotonic()
        slow = [(label, now - start, expected) for label, start, expected in running if now - start > 1.0]
        if not slow:
            return
        # Each running export counts for the fraction of its previous build time elapsed.
        partial = sum(min(elapsed / expected, 0.95) if expected else 0.5 for _, elapsed, expected in slow)
        fraction = min((done + partial) / max(total, 1), 1.0)
        filled = int(fraction * self.width)
        label, elapsed, _ = max(slow, key=lambda item: item[1])
        more = f" (+{len(running) - 1})" if len(running) > 1 else ""
        line = f"[{'#' * filled}{'.' * (self.width - filled)}] {done}/{total} building {label}{more} {elapsed:.0f}s"
        columns = shutil.get_terminal_size().columns
        self.stream.write("\r" + line[: columns - 1] + "\x1b[K")
        self.stream.flush()
        self.shown = True

    def clear(self) -> None:
        if self.shown:
            self.stream.write("\r\x1b[K")
            self.stream.flush()
            self.shown = False

