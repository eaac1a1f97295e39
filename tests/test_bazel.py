"""The Bazel rules (SPEC §4), driven through a real Bazel 4 and a real nginx.

One Bazel server serves the whole module: it has its own ``--output_user_root`` in a
temporary folder, works on a copy of this repository's Bazel workspace (so the checkout
stays clean and the tests can add packages of their own), and is shut down at the end.
The Python toolchain is pointed at ``sys.executable`` through a generated
``user.bazelrc``.  An nginx with WebDAV PUT on a free loopback port is the HTTP remote
cache.

Bazel and nginx are required: CI installs them (``.ci/run``); when they are missing
these tests fail instead of skipping.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import textwrap
import time
import urllib.parse
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

pytestmark = pytest.mark.bazel

REPO = Path(__file__).resolve().parents[1]

# What the copied Bazel workspace is made of (everything else in the checkout is
# irrelevant to Bazel, or large, like .venv).  torchpack/ is there because the builder
# runs the repository's own torchpack (//:torchpack).
WORKSPACE_ITEMS = ("WORKSPACE.bazel", "BUILD.bazel", ".bazelrc", ".bazelignore", "rules", "examples", "torchpack")
COPY_IGNORE = shutil.ignore_patterns("__pycache__", "*.pyc", "bazel-*", "torchpack-out")

# A single test here runs several full Bazel builds; keep any one command bounded.
COMMAND_TIMEOUT = 600

# Numbers worth reading in the test log, printed when the Bazel server shuts down.
TIMINGS: dict[str, float] = {}


def _require(tool: str) -> str:
    path = shutil.which(tool) or next(
        (p for p in (f"/usr/sbin/{tool}", f"/usr/bin/{tool}") if os.access(p, os.X_OK)), None
    )
    if path is None:
        pytest.fail(
            f"{tool} is not installed; the Bazel tests need it "
            "(apt-get install -y bazel-bootstrap nginx, as .ci/run does)",
            pytrace=False,
        )
    return path


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# --------------------------------------------------------------------------- nginx


NGINX_CONF = """\
{user}worker_processes 1;
daemon off;
pid {prefix}/nginx.pid;
error_log {prefix}/error.log error;
events {{ worker_connections 256; }}
http {{
    access_log {prefix}/access.log;
    client_body_temp_path {prefix}/tmp/body;
    proxy_temp_path {prefix}/tmp/proxy;
    fastcgi_temp_path {prefix}/tmp/fastcgi;
    uwsgi_temp_path {prefix}/tmp/uwsgi;
    scgi_temp_path {prefix}/tmp/scgi;
    server {{
        listen 127.0.0.1:{port};
        root {prefix}/www;
        location /cache/ {{
            dav_methods PUT DELETE MKCOL;
            create_full_put_path on;
            client_max_body_size 0;
        }}
    }}
}}
"""


@dataclass
class Nginx:
    """An nginx serving a WebDAV folder on 127.0.0.1 as Bazel's HTTP remote cache."""

    binary: str
    prefix: Path
    port: int = 0
    process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/cache"

    @property
    def stored(self) -> Path:
        return self.prefix / "www" / "cache"

    def start(self) -> None:
        assert self.process is None
        self.port = _free_port()
        (self.prefix / "www" / "cache").mkdir(parents=True, exist_ok=True)
        (self.prefix / "tmp").mkdir(exist_ok=True)
        conf = self.prefix / "nginx.conf"
        conf.write_text(
            NGINX_CONF.format(
                prefix=self.prefix,
                port=self.port,
                # Workers of a root master run as "nobody" unless told otherwise and
                # could not write the cache folder.
                user="user root root;\n" if os.geteuid() == 0 else "",
            )
        )
        self.process = subprocess.Popen(
            # -e: the startup error log too, before the configuration is read.
            [self.binary, "-p", str(self.prefix), "-e", str(self.prefix / "error.log"), "-c", str(conf)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=open(self.prefix / "stderr.log", "wb"),
        )
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return
            except OSError:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    self.stop()
                    log = (self.prefix / "stderr.log").read_text(errors="replace")
                    pytest.fail(f"nginx did not start on port {self.port}:\n{log}")
                time.sleep(0.05)

    def stop(self) -> None:
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGQUIT)  # graceful: finish open uploads
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    def entries(self) -> int:
        return sum(1 for p in self.stored.rglob("*") if p.is_file())


@pytest.fixture(scope="module")
def nginx(tmp_path_factory):
    server = Nginx(_require("nginx"), tmp_path_factory.mktemp("nginx"))
    server.start()
    try:
        yield server
    finally:
        server.stop()


# --------------------------------------------------------------------------- bazel


@dataclass
class Result:
    args: list[str]
    returncode: int
    stdout: str
    stderr: str
    seconds: float
    execlog: list[dict] = field(default_factory=list)
    events: list[dict] = field(default_factory=list)

    def check(self) -> "Result":
        assert self.returncode == 0, (
            f"bazel {' '.join(self.args)} failed ({self.returncode}):\n{self.stderr[-6000:]}"
        )
        return self

    def spawns(self, mnemonic: str = "TorchPackage") -> list[dict]:
        return [e for e in self.execlog if e.get("mnemonic") == mnemonic]

    def packaged(self) -> dict[str, bool]:
        """Archive (workspace-relative, e.g. examples/tinynet/tinynet.pt) -> remote cache hit,
        for every TorchPackage spawn in the execution log."""
        found = {}
        for spawn in self.spawns():
            for output in spawn.get("listedOutputs", []):
                if output.endswith(".pt"):
                    # bazel-out/<configuration>/bin/<package>/<out>
                    found[output.split("/", 3)[3]] = bool(spawn.get("remoteCacheHit"))
        return found

    def outputs(self) -> dict[str, list[Path]]:
        """Label -> files of its default output group, from the build event protocol."""
        sets: dict[str, dict] = {}
        completed: dict[str, list[str]] = {}
        for event in self.events:
            key = event.get("id", {})
            if "namedSet" in key:
                sets[key["namedSet"]["id"]] = event.get("namedSetOfFiles", {})
            elif "targetCompleted" in key and "completed" in event:
                groups = event["completed"].get("outputGroup", [])
                completed[key["targetCompleted"]["label"]] = [
                    s["id"] for g in groups if g.get("name") == "default" for s in g.get("fileSets", [])
                ]

        def files(set_id: str, seen: set) -> list[Path]:
            if set_id in seen:
                return []
            seen.add(set_id)
            entry = sets.get(set_id, {})
            found = [
                Path(urllib.parse.unquote(urllib.parse.urlparse(f["uri"]).path))
                for f in entry.get("files", [])
                if f.get("uri", "").startswith("file://")
            ]
            for child in entry.get("fileSets", []):
                found += files(child["id"], seen)
            return found

        return {label: [f for s in ids for f in files(s, set())] for label, ids in completed.items()}


def _read_json_stream(path: Path) -> list[dict]:
    """Bazel writes the execution log and the BEP as JSON objects one after another."""
    if not path.exists():
        return []
    text = path.read_text()
    decoder = json.JSONDecoder()
    items, index = [], 0
    while True:
        while index < len(text) and text[index].isspace():
            index += 1
        if index >= len(text):
            return items
        item, index = decoder.raw_decode(text, index)
        items.append(item)


@dataclass
class Bazel:
    """A Bazel server on a private output root, working on a copy of the workspace."""

    binary: str
    workspace: Path
    output_user_root: Path
    scratch: Path
    counter: int = 0

    def startup(self) -> list[str]:
        return [
            self.binary,
            f"--output_user_root={self.output_user_root}",
            "--nohome_rc",
            "--max_idle_secs=900",
        ]

    def env(self) -> dict[str, str]:
        env = {
            key: value
            for key, value in os.environ.items()
            if not key.startswith(("BAZEL", "TEST_", "PYTHON", "VIRTUAL_ENV"))
        }
        # Anything that tried to download would go through a proxy nobody listens on:
        # the builds below are offline by construction.  The loopback remote cache is
        # exempt.
        for key in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY"):
            env[key] = "http://127.0.0.1:9"
        env["no_proxy"] = env["NO_PROXY"] = "127.0.0.1,localhost"
        return env

    def run(self, command: str, *args: str, logs: bool = False, timeout: int = COMMAND_TIMEOUT) -> Result:
        self.counter += 1
        extra: list[str] = []
        execlog = self.scratch / f"exec-{self.counter}.json"
        events = self.scratch / f"bep-{self.counter}.json"
        if logs:
            extra = [f"--execution_log_json_file={execlog}", f"--build_event_json_file={events}"]
        argv = [*self.startup(), command, *extra, *args]
        started = time.monotonic()
        proc = subprocess.run(
            argv,
            cwd=self.workspace,
            env=self.env(),
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        seconds = time.monotonic() - started
        return Result(
            [command, *args],
            proc.returncode,
            proc.stdout,
            proc.stderr,
            seconds,
            _read_json_stream(execlog) if logs else [],
            _read_json_stream(events) if logs else [],
        )

    def build(self, *args: str) -> Result:
        return self.run("build", *args, logs=True)

    def info(self, key: str) -> str:
        return self.run("info", key).check().stdout.strip()

    def shutdown(self) -> None:
        subprocess.run(
            [*self.startup(), "shutdown"],
            cwd=self.workspace,
            env=self.env(),
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=120,
        )


def _copy_workspace(destination: Path) -> None:
    destination.mkdir(parents=True)
    for name in WORKSPACE_ITEMS:
        source = REPO / name
        if source.is_dir():
            shutil.copytree(source, destination / name, ignore=COPY_IGNORE)
        else:
            shutil.copy2(source, destination / name)
    # The fixture's own settings: the interpreter running these tests (it has torch and
    # torchpack) becomes the Python toolchain, and so the builder.
    # (build, test, info, clean and cquery inherit the build line.)
    (destination / "user.bazelrc").write_text(
        "".join(
            f"{command} --repo_env=TORCHPACK_PYTHON={sys.executable}\n"
            for command in ("build", "query", "fetch")
        )
    )


@contextlib.contextmanager
def bazel_server(root: Path, prepare: Callable[[Path], None] | None = None) -> Iterator[Bazel]:
    """A Bazel server over a copy of this repository's workspace in ``root/workspace``, which
    ``prepare`` may add to first; shut down on leaving."""
    binary = _require("bazel")
    _copy_workspace(root / "workspace")
    if prepare is not None:
        prepare(root / "workspace")
    (root / "scratch").mkdir()
    server = Bazel(binary, root / "workspace", root / "output_user_root", root / "scratch")
    try:
        yield server
    finally:
        server.shutdown()


@pytest.fixture(scope="module")
def bazel(tmp_path_factory, request):
    try:
        with bazel_server(tmp_path_factory.mktemp("bazel")) as server:
            yield server
    finally:
        reporter = request.config.pluginmanager.get_plugin("terminalreporter")
        capture = request.config.pluginmanager.get_plugin("capturemanager")
        if reporter is not None and capture is not None and TIMINGS:
            with capture.global_and_fixture_disabled():
                reporter.write_line("")
                for what, seconds in TIMINGS.items():
                    reporter.write_line(f"bazel: {what}: {seconds:.1f} s")


# --------------------------------------------------------------------------- helpers

BROKEN_BUILD = textwrap.dedent(
    """\
    load("//rules:defs.bzl", "torch_package")

    # allow_empty = false, and no module matches the glob.
    torch_package(
        name = "unmatched",
        srcs = ["//examples"],
        intern = {"include": ["examples.nothing_here.**"], "allow_empty": False},
        extern = "torch.**",
        pickle = {"broken/x.pkl": {"attr": "examples:__name__"}},
    )

    # A glob that is not one.
    torch_package(
        name = "bad_glob",
        srcs = ["//examples"],
        intern = ["examples.**x"],
    )

    # A factory in a module that does not exist.
    torch_package(
        name = "missing_module",
        srcs = ["//examples"],
        intern = ["examples"],
        pickle = {"broken/model.pkl": {"call": "examples.no_such_module:build"}},
    )
    """
)


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@dataclass
class CliBuild:
    """``python -m torchpack.build //examples/...`` run on the same workspace copy as Bazel
    (so both use one snapshot of torchpack and the examples), writing to its own folder."""

    archives: dict[str, Path]
    definitions: dict[str, dict]
    outs: dict[str, str]


@pytest.fixture(scope="module")
def cli_build(bazel, tmp_path_factory) -> CliBuild:
    out = tmp_path_factory.mktemp("cli-out")
    base = [sys.executable, "-m", "torchpack.build", "//examples/...", "--out", str(out), "--json"]
    # `python -m` puts the working directory first on sys.path: the copy's torchpack runs.
    run = dict(cwd=bazel.workspace, capture_output=True, text=True, timeout=COMMAND_TIMEOUT)
    listed = subprocess.run([*base, "--list"], **run)
    assert listed.returncode == 0, listed.stderr
    built = subprocess.run([*base, "--no-cache"], **run)
    assert built.returncode == 0, built.stdout + built.stderr
    targets = json.loads(listed.stdout)["targets"]
    assert targets, "no example targets in examples/*/BUILD.toml"
    return CliBuild(
        archives={t["label"]: Path(t["output"]) for t in targets},
        definitions={t["label"]: t["definition"] for t in targets},
        outs={t["label"]: t["definition"]["out"] for t in targets},
    )


def _canonical(definition: dict) -> str:
    return json.dumps(definition, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def _bazel_archives(bazel: Bazel, cli: CliBuild) -> dict[str, Path]:
    bin_dir = Path(bazel.info("bazel-bin"))
    return {
        label: bin_dir.joinpath(*label[2:].split(":")[0].split("/"), out) for label, out in cli.outs.items()
    }


def _relative_outputs(cli: CliBuild) -> list[str]:
    return sorted(f"{label[2:].split(':')[0]}/{out}" for label, out in cli.outs.items())


@pytest.fixture(scope="module")
def cold_build(bazel, nginx, cli_build) -> Result:
    """The first build of every example: nothing cached anywhere, uploads to the cache."""
    assert nginx.entries() == 0
    result = bazel.build("//examples/...", f"--remote_cache={nginx.url}").check()
    TIMINGS["cold build of //examples/..."] = result.seconds
    return result


# --------------------------------------------------------------------------- tests


def test_bazel_builds_every_example_like_the_cli(bazel, cold_build, cli_build, nginx):
    packaged = cold_build.packaged()
    assert sorted(packaged) == _relative_outputs(cli_build), "one TorchPackage action per BUILD.toml target"
    assert not any(packaged.values()), "nothing was cached yet"
    built = cold_build.outputs()
    for label, archive in _bazel_archives(bazel, cli_build).items():
        assert built[label] == [archive], label
        # Byte-identical to the CLI's archive for the same target definition.
        cli_archive = cli_build.archives[label]
        assert archive.read_bytes() == cli_archive.read_bytes(), f"{label}: Bazel and CLI archives differ"
        # The rule wrote the same canonical definition the CLI builds from.
        definition = archive.with_name(archive.name + ".def.json").read_text(encoding="utf-8")
        assert definition == _canonical(cli_build.definitions[label]), label
        # TorchPackageInfo's side files.
        digest = archive.with_name(archive.name + ".sha256").read_text()
        assert digest == _sha256(archive) + "\n"
        externs = archive.with_name(archive.name + ".extern_modules").read_text()
        with zipfile.ZipFile(archive) as zf:
            (record,) = [n for n in zf.namelist() if n.endswith(".data/extern_modules")]
            assert externs == zf.read(record).decode()
        assert externs.split(), label
    # The uploads reached nginx.
    assert nginx.entries() > 0


def test_noop_rebuild_runs_nothing(bazel, cold_build, nginx):
    result = bazel.build("//examples/...", f"--remote_cache={nginx.url}").check()
    TIMINGS["no-op rebuild"] = result.seconds
    assert result.spawns() == []


def test_remote_cache_serves_a_rebuild_after_clean_expunge(bazel, cold_build, cli_build, nginx):
    bazel.run("clean", "--expunge").check()
    result = bazel.build("//examples/...", f"--remote_cache={nginx.url}").check()
    TIMINGS["rebuild from the remote cache after clean --expunge"] = result.seconds
    packaged = result.packaged()
    assert sorted(packaged) == _relative_outputs(cli_build)
    assert all(packaged.values()), f"not served from the remote cache: {[a for a, hit in packaged.items() if not hit]}"
    assert "remote cache hit" in result.stderr
    for label, archive in _bazel_archives(bazel, cli_build).items():
        assert archive.read_bytes() == cli_build.archives[label].read_bytes(), label


def test_build_succeeds_with_the_cache_down(bazel, cold_build, cli_build, nginx):
    nginx.stop()
    try:
        bazel.run("clean").check()
        result = bazel.build("//examples/tinynet", f"--remote_cache={nginx.url}").check()
        assert result.packaged() == {"examples/tinynet/tinynet.pt": False}
        archive = _bazel_archives(bazel, cli_build)["//examples/tinynet:tinynet"]
        assert archive.read_bytes() == cli_build.archives["//examples/tinynet:tinynet"].read_bytes()
    finally:
        nginx.start()


def test_py_test_reads_archives_through_runfiles(bazel, cold_build):
    result = bazel.run("test", "//examples/...", "--test_output=errors").check()
    passed = [line for line in result.stdout.splitlines() + result.stderr.splitlines() if " PASSED " in line]
    assert len(passed) >= 4, result.stdout + result.stderr
    assert "Executed" in result.stdout + result.stderr


def test_broken_targets_fail_with_the_builders_message(bazel, cold_build):
    broken = bazel.workspace / "broken"
    broken.mkdir(exist_ok=True)
    (broken / "BUILD.bazel").write_text(BROKEN_BUILD)
    result = bazel.build("//broken:all", "--keep_going")
    assert result.returncode != 0
    stderr = result.stderr
    assert "Traceback" not in stderr, stderr
    expected = [
        "error: broken/BUILD.bazel: //broken:unmatched: attribute 'intern/extern/mock/deny': EmptyMatchError",
        "error: broken/BUILD.bazel: //broken:bad_glob: attribute 'intern': ",
        "error: broken/BUILD.bazel: //broken:missing_module: attribute 'pickle.\"broken/model.pkl\".call': "
        "cannot import module examples.no_such_module",
    ]
    for line in expected:
        assert line in stderr, f"{line!r} not in:\n{stderr}"
    # The failed actions left no archive behind.
    broken_bin = Path(bazel.info("bazel-bin")) / "broken"
    for name in ("unmatched", "bad_glob", "missing_module"):
        assert not (broken_bin / f"{name}.pt").exists(), name
