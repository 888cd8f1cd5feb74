"""What every scenario shares: results, the machine, scratch databases, the server and wrk.

A scenario never measures a bare time: it measures the thing and a floor under the same
conditions (same server, same middleware, same database, same load) and reports the ratio
(DESIGN.md §6). Measurements of the thing and its floor alternate in rounds, and the ratio is
the median of the per-round ratios, so that background load on a shared 2-core machine hits
both sides of each ratio alike.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import re
import shutil
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_POSTGRES_URL = "postgres://postgres@127.0.0.1:5432/kehu_bench"


class BenchError(RuntimeError):
    """A benchmark could not run; the message says what to fix."""


@dataclass
class Result:
    """One figure: a value, the floor it is measured against, and their ratio.

    ``ratio`` is value / floor as the scenario computed it (for paired rounds, the median of
    the per-round ratios). ``goal_min_ratio`` is the least acceptable ratio, when there is a goal.
    """

    scenario: str
    name: str
    database: str
    value: float
    unit: str
    floor_name: str
    floor_value: float
    ratio: float
    goal_min_ratio: float | None = None
    details: dict[str, Any] = field(default_factory=dict)
    # The lowest and highest per-round ratio: how much the machine's noise moved the figure.
    ratio_range: tuple[float, float] | None = None

    @property
    def passed(self) -> bool | None:
        return None if self.goal_min_ratio is None else self.ratio >= self.goal_min_ratio

    def as_dict(self) -> dict[str, Any]:
        return {
            "scenario": self.scenario,
            "name": self.name,
            "database": self.database,
            "value": self.value,
            "unit": self.unit,
            "floor_name": self.floor_name,
            "floor_value": self.floor_value,
            "ratio": self.ratio,
            "goal_min_ratio": self.goal_min_ratio,
            "passed": self.passed,
            "ratio_range": self.ratio_range,
            "details": self.details,
        }


# --- the machine ----------------------------------------------------------------------------
def _read(path: str) -> str:
    try:
        return Path(path).read_text(encoding="utf-8")
    except OSError:
        return ""


def _cpu_model() -> str:
    for line in _read("/proc/cpuinfo").splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def _ram_gib() -> float | None:
    match = re.search(r"^MemTotal:\s+(\d+) kB", _read("/proc/meminfo"), re.MULTILINE)
    return round(int(match.group(1)) / 1024 / 1024, 1) if match else None


def _os_name() -> str:
    match = re.search(r'^PRETTY_NAME="?([^"\n]+)"?', _read("/etc/os-release"), re.MULTILINE)
    return f"{match.group(1) if match else platform.system()}, kernel {platform.release()}"


def _wrk_version(wrk: str | None) -> str:
    if wrk is None:
        return "not installed"
    # wrk has no --version; its usage text starts with the version.
    completed = subprocess.run([wrk, "--version"], capture_output=True, text=True, check=False)
    first_line = (completed.stdout or completed.stderr).splitlines()[:1]
    return first_line[0].split("Copyright")[0].strip() if first_line else "unknown"


def machine_info(postgres_version: str | None) -> dict[str, Any]:
    import django
    import gunicorn

    return {
        "cpu": _cpu_model(),
        "cores": os.cpu_count(),
        "ram_gib": _ram_gib(),
        "os": _os_name(),
        "python": platform.python_version(),
        "django": django.get_version(),
        "gunicorn": gunicorn.__version__,
        "sqlite": sqlite3.sqlite_version,
        "postgresql": postgres_version or "not reachable",
        "wrk": _wrk_version(shutil.which("wrk")),
        "load_average_at_start": [round(value, 2) for value in os.getloadavg()],
    }


# --- scratch databases ----------------------------------------------------------------------
@dataclass(frozen=True)
class ScratchDatabase:
    """A throwaway Kehu installation: its own data folder and, for PostgreSQL, its own database."""

    vendor: str  # "sqlite" or "postgresql"
    data_dir: Path
    url: str  # KEHU_DATABASE_URL; empty means the SQLite file in data_dir

    def env(self) -> dict[str, str]:
        """The environment for a Kehu process on this database, with nothing inherited from KEHU_*."""
        env = {key: value for key, value in os.environ.items() if not key.startswith(("KEHU_", "DJANGO_"))}
        env.update(
            {
                "DJANGO_SETTINGS_MODULE": "bench.settings",
                "PYTHONPATH": os.pathsep.join(
                    filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH", "")])
                ),
                "KEHU_DEBUG": "false",
                "KEHU_DATA_DIR": str(self.data_dir),
                "KEHU_ALLOWED_HOSTS": "127.0.0.1",
            }
        )
        if self.url:
            # Only when set: an empty KEHU_DATABASE_URL is not the same as none to kehu.settings.
            env["KEHU_DATABASE_URL"] = self.url
        return env


def _postgres_admin_kwargs(url: str) -> dict[str, Any]:
    parts = urlsplit(url)
    return {
        "host": parts.hostname or "127.0.0.1",
        "port": parts.port or 5432,
        "user": parts.username or "postgres",
        "password": parts.password or None,
        "dbname": "postgres",
        "connect_timeout": 3,
    }


def _postgres_name(url: str) -> str:
    name = urlsplit(url).path.lstrip("/")
    # This database is dropped and recreated on every run: refuse anything that looks real.
    if not re.fullmatch(r"[a-z0-9_]*bench[a-z0-9_]*", name):
        raise BenchError(f"the PostgreSQL benchmark database must have 'bench' in its name, got {name!r}")
    return name


def postgres_version(url: str) -> str | None:
    """The server's version, or None when it does not accept connections."""
    import psycopg

    try:
        with psycopg.connect(**_postgres_admin_kwargs(url)) as connection:
            row = connection.execute("SHOW server_version").fetchone()
    except psycopg.OperationalError:
        return None
    return str(row[0]) if row else None


@contextlib.contextmanager
def scratch_database(vendor: str, *, postgres_url: str) -> Iterator[ScratchDatabase]:
    """A fresh, empty database of ``vendor`` and a data folder, both removed afterwards."""
    import psycopg
    from psycopg import sql

    with tempfile.TemporaryDirectory(prefix=f"kehu-bench-{vendor}-") as data_dir:
        if vendor == "sqlite":
            yield ScratchDatabase(vendor, Path(data_dir), "")
            return
        if vendor != "postgresql":
            raise BenchError(f"unknown database vendor {vendor!r}")
        name = _postgres_name(postgres_url)
        statement = sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        with psycopg.connect(**_postgres_admin_kwargs(postgres_url), autocommit=True) as connection:
            connection.execute(statement)  # left over by an interrupted run
            connection.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        try:
            yield ScratchDatabase(vendor, Path(data_dir), postgres_url)
        finally:
            with psycopg.connect(**_postgres_admin_kwargs(postgres_url), autocommit=True) as connection:
                connection.execute(statement)


CACHE_DIR = REPO_ROOT / "var" / "bench"


@contextlib.contextmanager
def cached_database(vendor: str, *, name: str, postgres_url: str) -> Iterator[ScratchDatabase]:
    """A database kept between runs (var/bench/<name>-<vendor>, PostgreSQL ``kehu_bench_<name>``).

    For datasets that take minutes to build (a million customers): the scenario's prepare
    step checks what is there and adds only what is missing. A dataset built under other
    migrations (any migration file changed) is thrown away and built again.
    """
    import psycopg
    from psycopg import sql

    if not re.fullmatch(r"[a-z0-9_]+", name):
        raise BenchError(f"a cached dataset's name is lower-case letters, digits and _, got {name!r}")
    if vendor not in ("sqlite", "postgresql"):
        raise BenchError(f"unknown database vendor {vendor!r}")
    data_dir = CACHE_DIR / f"{name}-{vendor}"
    fingerprint_file = data_dir / "migrations.sha256"
    fingerprint = migrations_fingerprint()
    # A dataset built under other migrations would be measured with another schema: start over.
    stale = data_dir.exists() and (
        not fingerprint_file.exists() or fingerprint_file.read_text(encoding="utf-8") != fingerprint
    )
    if stale:
        shutil.rmtree(data_dir)
    fresh = not data_dir.exists()
    data_dir.mkdir(parents=True, exist_ok=True)
    url = ""
    if vendor == "postgresql":
        database_name = f"kehu_bench_{name}"
        url = urlunsplit(urlsplit(postgres_url)._replace(path=f"/{database_name}"))
        identifier = sql.Identifier(database_name)
        with psycopg.connect(**_postgres_admin_kwargs(postgres_url), autocommit=True) as connection:
            if fresh:
                connection.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(identifier))
            exists = connection.execute(
                "SELECT 1 FROM pg_database WHERE datname = %s", [database_name]
            ).fetchone()
            if not exists:
                connection.execute(sql.SQL("CREATE DATABASE {}").format(identifier))
    fingerprint_file.write_text(fingerprint, encoding="utf-8")
    yield ScratchDatabase(vendor, data_dir, url)


def migrations_fingerprint() -> str:
    """A digest of every migration file: a cached dataset is reused only under the same schema."""
    import hashlib

    digest = hashlib.sha256()
    for path in sorted((REPO_ROOT / "kehu").glob("*/migrations/*.py")):
        digest.update(path.relative_to(REPO_ROOT).as_posix().encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


def prepare_with(database: ScratchDatabase, arguments: list[str], *, timeout: float = 600) -> dict[str, Any]:
    """Run bench/prepare.py with ``arguments`` on ``database``; its stderr (progress) passes through."""
    completed = subprocess.run(
        [sys.executable, "-m", "bench.prepare", *arguments],
        cwd=REPO_ROOT,
        env=database.env(),
        stdout=subprocess.PIPE,
        text=True,
        check=False,
        timeout=timeout,
    )
    if completed.returncode != 0:
        raise BenchError(f"preparing the {database.vendor} database failed (exit {completed.returncode})")
    return json.loads(completed.stdout)


def prepare(database: ScratchDatabase, *, probes: tuple[str, ...] = ()) -> dict[str, Any]:
    """Migrate, create an administrator and a token (see bench/prepare.py); returns its JSON."""
    command = [sys.executable, "-m", "bench.prepare"]
    for path in probes:
        command += ["--probe", path]
    completed = subprocess.run(
        command,
        cwd=REPO_ROOT,
        env=database.env(),
        capture_output=True,
        text=True,
        check=False,
        timeout=600,
    )
    if completed.returncode != 0:
        raise BenchError(f"preparing the {database.vendor} database failed:\n{completed.stderr[-4000:]}")
    return json.loads(completed.stdout)


# --- the server -----------------------------------------------------------------------------
def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _wait_healthy(url: str, process: subprocess.Popen[bytes], log_path: Path, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise BenchError(f"the server exited with {process.returncode}:\n{_tail(log_path)}")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:  # noqa: S310 -- our own loopback server
                if response.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(0.25)
    raise BenchError(f"the server did not answer {url} within {timeout:.0f} s:\n{_tail(log_path)}")


def _tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(encoding="utf-8", errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


@dataclass(frozen=True)
class Server:
    base_url: str
    workers: int
    threads: int
    log_path: Path


@contextlib.contextmanager
def kehu_server(database: ScratchDatabase, *, workers: int, threads: int) -> Iterator[Server]:
    """Run ``kehu serve`` (gunicorn, gthread workers) on ``database`` until the block ends.

    It is the production command itself, so the benchmark measures what a deployment runs;
    only the job consumer is left out (--no-worker), because it would compete for the cores.
    """
    port = _free_port()
    log_path = database.data_dir / "server.log"
    command = [
        sys.executable,
        "-m",
        "kehu.cli",
        "serve",
        "--no-worker",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        str(workers),
        "--threads",
        str(threads),
    ]
    with log_path.open("wb") as log:
        # A session of its own, so the gunicorn workers can be stopped as one group.
        process = subprocess.Popen(
            command,
            cwd=REPO_ROOT,
            env=database.env(),
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    server = Server(f"http://127.0.0.1:{port}", workers, threads, log_path)
    try:
        _wait_healthy(f"{server.base_url}/healthz", process, log_path)
        yield server
    finally:
        _stop(process)


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)  # gunicorn's graceful stop
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=30)
    # Whatever is left in the server's own process group (a stuck worker) is killed outright.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait(timeout=10)


# --- load generation ------------------------------------------------------------------------
@dataclass(frozen=True)
class WrkRun:
    requests_per_second: float
    p50_ms: float
    p99_ms: float
    requests: int
    non_2xx: int
    socket_errors: int
    # Only when the run used a request script (wrk's --latency table has no 95th percentile).
    p95_ms: float | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "requests_per_second": self.requests_per_second,
            "p50_ms": self.p50_ms,
            "p95_ms": self.p95_ms,
            "p99_ms": self.p99_ms,
            "requests": self.requests,
            "non_2xx": self.non_2xx,
            "socket_errors": self.socket_errors,
        }


_MS_PER_UNIT = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0, "h": 3_600_000.0}


def _latency_ms(text: str, percentile: str) -> float:
    match = re.search(rf"^\s*{percentile}%\s+([\d.]+)(us|ms|s|m|h)\s*$", text, re.MULTILINE)
    if not match:
        raise BenchError(f"no {percentile}% latency in wrk's output (was --latency given?):\n{text}")
    return float(match.group(1)) * _MS_PER_UNIT[match.group(2)]


def parse_wrk(text: str) -> WrkRun:
    """Requests/s, p50 and p99 from the output of ``wrk --latency``."""
    rate = re.search(r"^Requests/sec:\s+([\d.]+)", text, re.MULTILINE)
    total = re.search(r"^\s*(\d+) requests in", text, re.MULTILINE)
    if not rate or not total:
        raise BenchError(f"cannot read wrk's output:\n{text}")
    non_2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", text)
    socket = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text)
    p95 = re.search(r"^P95_US (\d+)", text, re.MULTILINE)
    return WrkRun(
        p95_ms=int(p95.group(1)) / 1000 if p95 else None,
        requests_per_second=float(rate.group(1)),
        p50_ms=_latency_ms(text, "50"),
        p99_ms=_latency_ms(text, "99"),
        requests=int(total.group(1)),
        non_2xx=int(non_2xx.group(1)) if non_2xx else 0,
        socket_errors=sum(int(value) for value in socket.groups()) if socket else 0,
    )


def require_wrk() -> str:
    wrk = shutil.which("wrk")
    if wrk is None:
        raise BenchError(
            "wrk is not installed; the HTTP benchmarks need it as their load generator.\n"
            "Install it with:  sudo apt-get install wrk   (Debian/Ubuntu; Homebrew: brew install wrk)"
        )
    return wrk


def run_wrk(
    url: str,
    *,
    duration: float,
    connections: int,
    threads: int,
    headers: dict[str, str] | None = None,
    script: Path | None = None,
) -> WrkRun:
    command = [
        require_wrk(),
        f"-t{threads}",
        f"-c{connections}",
        f"-d{max(1, round(duration))}s",
        "--latency",
        "--timeout",
        "10s",
    ]
    for name, value in (headers or {}).items():
        command += ["-H", f"{name}: {value}"]
    if script is not None:
        command += ["-s", str(script)]
    completed = subprocess.run(
        [*command, url], capture_output=True, text=True, check=False, timeout=duration + 60
    )
    if completed.returncode != 0:
        raise BenchError(f"wrk failed ({completed.returncode}): {completed.stderr or completed.stdout}")
    run = parse_wrk(completed.stdout)
    if run.non_2xx:
        # A benchmark of error responses measures nothing; the endpoint must answer 200.
        raise BenchError(f"{run.non_2xx} of {run.requests} responses from {url} were not 2xx/3xx")
    return run


@dataclass(frozen=True)
class Endpoint:
    """What wrk requests: one path, or (with ``paths``) a rotation over many, e.g. search queries."""

    name: str
    path: str
    headers: dict[str, str] = field(default_factory=dict)
    paths: tuple[str, ...] = ()
    method: str = "GET"
    body: str | None = None

    def script(self, directory: Path) -> Path | None:
        """A wrk Lua script that rotates over ``paths`` and reports the 95th percentile.

        Without one (a single GET) wrk's own request loop runs and p95 is not measured.
        """
        if not self.paths and self.method == "GET":
            return None
        paths = self.paths or (self.path,)
        body = "nil" if self.body is None else _lua_string(self.body)
        lines = [
            "local paths = {" + ", ".join(_lua_string(path) for path in paths) + "}",
            "local index = 0",
            "request = function()",
            "  index = index % #paths + 1",
            f"  return wrk.format({_lua_string(self.method)}, paths[index], nil, {body})",
            "end",
            "done = function(summary, latency, requests)",
            '  io.write(string.format("P95_US %d\\n", latency:percentile(95)))',
            "end",
        ]
        script = directory / f"wrk-{re.sub(r'[^a-z0-9]+', '-', self.name.lower())}.lua"
        script.write_text("\n".join(lines) + "\n", encoding="utf-8")
        return script


def _lua_string(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


@dataclass
class PairedMeasurement:
    """Rounds of (endpoint, floor) runs under identical load."""

    endpoint: Endpoint
    floor: Endpoint
    rounds: list[tuple[WrkRun, WrkRun]]

    def median(self, side: int, attribute: str) -> float:
        return statistics.median(getattr(pair[side], attribute) for pair in self.rounds)

    def median_ratio(self, attribute: str) -> float:
        return statistics.median(
            getattr(run, attribute) / getattr(floor, attribute) for run, floor in self.rounds
        )

    def ratio_range(self, attribute: str) -> tuple[float, float]:
        ratios = [getattr(run, attribute) / getattr(floor, attribute) for run, floor in self.rounds]
        return min(ratios), max(ratios)

    def result(
        self,
        *,
        scenario: str,
        name: str,
        database: str,
        attribute: str,
        unit: str,
        goal_min_ratio: float | None = None,
    ) -> Result:
        """One figure from these rounds: medians of the endpoint and of the floor, and their ratio."""
        return Result(
            scenario=scenario,
            name=name,
            database=database,
            value=self.median(0, attribute),
            unit=unit,
            floor_name=self.floor.name,
            floor_value=self.median(1, attribute),
            ratio=self.median_ratio(attribute),
            goal_min_ratio=goal_min_ratio,
            details=self.details(),
            ratio_range=self.ratio_range(attribute) if len(self.rounds) > 1 else None,
        )

    def details(self) -> dict[str, Any]:
        return {
            "endpoint": self.endpoint.path,
            "floor": self.floor.path,
            "rounds": [{"endpoint": run.as_dict(), "floor": floor.as_dict()} for run, floor in self.rounds],
        }


def check_endpoint(base_url: str, endpoint: Endpoint) -> None:
    """One request before loading it: a 401 or 404 would otherwise be benchmarked as a result."""
    request = urllib.request.Request(  # noqa: S310 -- loopback
        base_url + (endpoint.paths[0] if endpoint.paths else endpoint.path),
        headers=endpoint.headers,
        method=endpoint.method,
        data=endpoint.body.encode() if endpoint.body is not None else None,
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310 -- our own loopback server
            status = response.status
    except urllib.error.HTTPError as error:
        status = error.code
    if not 200 <= status < 300:
        raise BenchError(f"{endpoint.method} {endpoint.path} answered {status}, not 2xx")


# --- the run as a whole ---------------------------------------------------------------------
@dataclass
class Options:
    # Many short rounds rather than a few long ones: each ratio pairs two runs close in time,
    # so other work on a shared machine skews fewer of them, and the median drops those it does.
    duration: float = 6.0  # seconds of load per measurement
    warmup: float = 3.0  # seconds of load per endpoint before the first round, discarded
    rounds: int = 8
    connections: int = 16
    wrk_threads: int = 2
    databases: tuple[str, ...] = ("sqlite", "postgresql")
    postgres_url: str = DEFAULT_POSTGRES_URL


@dataclass
class Context:
    """Handed to every scenario: options, the machine, where to log, and what it found."""

    options: Options
    machine: dict[str, Any]
    databases: list[str]  # the vendors available on this machine, in the order to run them
    skipped: list[str] = field(default_factory=list)
    notes: dict[str, list[str]] = field(default_factory=dict)

    def log(self, message: str) -> None:
        print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)

    def note(self, scenario: str, text: str) -> None:
        """A line for the scenario's section of docs/benchmarks.md (setup, query counts, caveats)."""
        self.notes.setdefault(scenario, []).append(text)

    def scratch_database(self, vendor: str) -> contextlib.AbstractContextManager[ScratchDatabase]:
        return scratch_database(vendor, postgres_url=self.options.postgres_url)

    def measure_pair(
        self,
        base_url: str,
        endpoint: Endpoint,
        floor: Endpoint,
        *,
        rounds: int | None = None,
        duration: float | None = None,
        connections: int | None = None,
    ) -> PairedMeasurement:
        """Warm both up, then alternate endpoint and floor runs, swapping the order every round.

        ``rounds``, ``duration`` and ``connections`` override the options for scenarios with
        many pairs to measure.
        """
        options = self.options
        load: dict[str, Any] = {
            "duration": options.warmup,
            "connections": connections or options.connections,
            "threads": min(options.wrk_threads, connections or options.connections),
        }
        with tempfile.TemporaryDirectory(prefix="kehu-bench-wrk-") as directory:
            scripts = {target.name: target.script(Path(directory)) for target in (endpoint, floor)}
            for target in (endpoint, floor):
                check_endpoint(base_url, target)
                if options.warmup > 0:
                    run_wrk(
                        base_url + target.path, headers=target.headers, script=scripts[target.name], **load
                    )
            load["duration"] = duration or options.duration
            measured = []
            total = rounds or options.rounds
            for number in range(total):
                runs: dict[str, WrkRun] = {}
                order = (endpoint, floor) if number % 2 == 0 else (floor, endpoint)
                for target in order:
                    runs[target.name] = run = run_wrk(
                        base_url + target.path, headers=target.headers, script=scripts[target.name], **load
                    )
                    p95 = f", p95 {run.p95_ms:.2f} ms" if run.p95_ms is not None else ""
                    self.log(
                        f"  round {number + 1}/{total} {target.name}: {run.requests_per_second:,.0f} req/s, "
                        f"p50 {run.p50_ms:.2f} ms{p95}, p99 {run.p99_ms:.2f} ms"
                    )
                measured.append((runs[endpoint.name], runs[floor.name]))
        return PairedMeasurement(endpoint, floor, measured)


def display_url(url: str) -> str:
    """The URL without its password, for reports."""
    parts = urlsplit(url)
    if not parts.password:
        return url
    netloc = f"{parts.username}:***@{parts.hostname}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))
