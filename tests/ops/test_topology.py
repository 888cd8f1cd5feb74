"""The scale-out topology on one machine: two stateless web servers and a separate worker,
sharing one database and a Redis queue (DESIGN.md §5), started with the real `kehu` command."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings

KEHU = str(Path(sys.executable).with_name("kehu"))
REDIS_URL = "redis://127.0.0.1:6379/15"


def _redis_reachable() -> bool:
    try:
        with socket.create_connection(("127.0.0.1", 6379), timeout=1):
            return True
    except OSError:
        return False


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _call(url: str, *, token: str | None = None, body: dict[str, Any] | None = None) -> tuple[int, Any]:
    request = urllib.request.Request(url, method="POST" if body is not None else "GET")  # noqa: S310 -- loopback test URL
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    if body is not None:
        request.add_header("Content-Type", "application/json")
        request.data = json.dumps(body).encode()
    try:
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310 -- loopback test URL
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read() or b"null")


def _wait_healthy(base_url: str, process: subprocess.Popen[bytes], deadline: float) -> dict[str, Any]:
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"server exited with {process.returncode}")
        try:
            status, body = _call(f"{base_url}/healthz")
            if status == 200:
                return dict(body)
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(0.3)
    raise AssertionError(f"{base_url} never became healthy")


@pytest.fixture
def topology_env(tmp_path: Path) -> Iterator[dict[str, str]]:
    if not _redis_reachable():
        pytest.skip("Redis not reachable on 127.0.0.1:6379: scale-out topology test skipped")
    database = settings.DATABASES["default"]
    env = {
        **os.environ,
        "KEHU_DATA_DIR": str(tmp_path),
        "KEHU_QUEUE_URL": REDIS_URL,
        "KEHU_ALLOWED_HOSTS": "127.0.0.1",
        "KEHU_ADMIN_PASSWORD": "topology-admin-pass",
        "KEHU_DEBUG": "false",
        "COLUMNS": "200",  # rich tables must not wrap the line the test reads
    }
    env.pop("KEHU_TESTING", None)
    scratch_database = None
    if database["ENGINE"].endswith("postgresql"):
        import psycopg

        scratch_database = f"kehu_topology_{uuid.uuid4().hex[:8]}"
        admin = psycopg.connect(
            host=database["HOST"] or "127.0.0.1",
            port=database["PORT"] or 5432,
            user=database["USER"] or "postgres",
            dbname="postgres",
            autocommit=True,
        )
        admin.execute(f'CREATE DATABASE "{scratch_database}"')
        env["KEHU_DATABASE_URL"] = (
            f"postgres://{database['USER'] or 'postgres'}@{database['HOST'] or '127.0.0.1'}:"
            f"{database['PORT'] or 5432}/{scratch_database}"
        )
    else:
        env["KEHU_DATABASE_URL"] = f"sqlite:///{tmp_path / 'kehu.sqlite3'}"
    import redis

    redis.Redis.from_url(REDIS_URL).flushdb()
    try:
        yield env
    finally:
        if scratch_database:
            admin.execute(f'DROP DATABASE IF EXISTS "{scratch_database}" WITH (FORCE)')
            admin.close()


def test_two_web_servers_and_a_worker_share_the_database_and_queue(topology_env: dict[str, str]) -> None:
    run = {"env": topology_env, "check": True, "capture_output": True, "timeout": 120}
    subprocess.run([KEHU, "migrate", "--no-input", "-v", "0"], **run)  # noqa: S603 -- our own console script
    subprocess.run([KEHU, "createadmin", "--no-input"], **run)  # noqa: S603
    token = subprocess.run([KEHU, "tokens", "create", "--user", "admin"], **run).stdout.decode().strip()  # noqa: S603
    ports = [_free_port(), _free_port()]
    processes: list[subprocess.Popen[bytes]] = []
    try:
        for port in ports:
            server = subprocess.Popen(  # noqa: S603
                [KEHU, "serve", "--no-worker", "--port", str(port), "--workers", "1"],
                env=topology_env,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            processes.append(server)
            # one at a time: each server collects static files into its data folder on start
            health = _wait_healthy(f"http://127.0.0.1:{port}", server, time.monotonic() + 90)
            assert health["components"]["queue"]["detail"].startswith("RedisHuey")
        worker = subprocess.Popen(
            [KEHU, "worker"],
            env=topology_env,  # noqa: S603
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        processes.append(worker)

        # a write through one server is read through the other
        status, created = _call(
            f"http://127.0.0.1:{ports[0]}/api/v1/departments", token=token, body={"name": "拓扑测试店"}
        )
        assert status == 201
        status, fetched = _call(
            f"http://127.0.0.1:{ports[1]}/api/v1/departments/{created['id']}", token=token
        )
        assert (status, fetched["name"]) == (200, "拓扑测试店")

        # a job enqueued from a third process is answered by the separate worker
        output = subprocess.run([KEHU, "check", "--worker"], **run).stdout.decode()  # noqa: S603
        assert f"answered from {socket.gethostname()}:{worker.pid}" in output.replace("\n", "")
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            process.wait(timeout=30)
