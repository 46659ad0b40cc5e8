"""Running the demo site under a real ASGI server process for end-to-end tests.

Daphne, Uvicorn, Hypercorn and Granian serve the same ``demo_project.asgi:application``;
:data:`TEST_SERVERS` are the ones the live tests run under (Daphne and Uvicorn unless
``LIVE_SERVERS`` names others). Each server gets its own SQLite
database in a temporary directory (unless ``env`` names another ``DATABASE_URL``), migrated
before it starts. Start servers once per module or session: start-up costs about a second.
"""

from __future__ import annotations

import contextlib
import http.client
import os
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parent.parent
START_TIMEOUT = 30.0
DEMO_APP = "demo_project.asgi:application"

#: Every server :func:`run_server` knows how to start.
SERVERS = ("daphne", "uvicorn", "hypercorn", "granian")
#: The servers the live-server tests run under (``LIVE_SERVERS=hypercorn,granian`` for others).
TEST_SERVERS = tuple(
    name.strip() for name in os.environ.get("LIVE_SERVERS", "daphne,uvicorn").split(",") if name
)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


#: Connections waiting to be accepted, for servers whose default is smaller (Daphne's 50).
LISTEN_BACKLOG = 2048
#: Seconds a websocket handshake may wait for the application, for servers that drop it
#: sooner (Daphne: 5).
HANDSHAKE_TIMEOUT = 60


def server_command(kind: str, port: int, app: str = DEMO_APP, access_log: bool = True) -> list[str]:
    """The command line that serves ``app`` with server ``kind`` on 127.0.0.1:``port``.

    One process (one worker) each, as the docs recommend per core; the application's
    lifespan is off (Channels' router does not speak it).
    """
    python = [sys.executable, "-m"]
    if kind == "daphne":
        quiet = [] if access_log else ["-v", "0"]
        # Twisted listens with a backlog of 50 (Uvicorn 2,048), and Daphne drops a websocket
        # whose handshake takes over 5 s: in a reconnect storm, most of them, and their
        # retries add to the storm (docs/serving.md).
        endpoint = f"tcp:port={port}:interface=127.0.0.1:backlog={LISTEN_BACKLOG}"
        storms = ["--websocket_connect_timeout", str(HANDSHAKE_TIMEOUT)]
        return [*python, "daphne", *quiet, *storms, "-e", endpoint, app]
    if kind == "uvicorn":
        quiet = [] if access_log else ["--no-access-log"]
        host = ["--host", "127.0.0.1", "--port", str(port)]
        return [*python, "uvicorn", *host, "--lifespan", "off", *quiet, app]
    if kind == "hypercorn":
        log = ["--access-logfile", "-"] if access_log else []
        return [*python, "hypercorn", "-k", "uvloop", "-b", f"127.0.0.1:{port}", *log, app]
    if kind == "granian":
        log = ["--access-log"] if access_log else ["--no-access-log"]
        host = ["--host", "127.0.0.1", "--port", str(port)]
        return [*python, "granian", "--interface", "asginl", *host, *log, app]
    raise ValueError(f"unknown server {kind!r}; known: {', '.join(SERVERS)}")


@dataclass
class LiveServer:
    """A running ASGI server process serving the demo project."""

    url: str
    port: int
    process: subprocess.Popen[bytes]
    var_dir: Path
    log_path: Path
    env: dict[str, str]
    kind: str = "daphne"
    command: tuple[str, ...] = ()

    @property
    def ws_url(self) -> str:
        return self.url.replace("http://", "ws://", 1)

    @property
    def database_path(self) -> Path:
        return self.var_dir / "demo.sqlite3"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def manage(self, *args: str) -> subprocess.CompletedProcess[str]:
        """Run a management command against this server's settings and database."""
        return subprocess.run(
            [sys.executable, "manage.py", *args],
            cwd=ROOT,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=120,
        )


def _wait_until_up(server: LiveServer) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise RuntimeError(
                f"{server.kind} exited with {server.process.returncode}:\n{server.log()}"
            )
        try:
            with urllib.request.urlopen(server.url + "/admin/login/", timeout=2):
                return
        except urllib.error.HTTPError:
            return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"{server.kind} did not answer within {START_TIMEOUT}s:\n{server.log()}")


def _start(
    command: tuple[str, ...], env: dict[str, str], log_path: Path
) -> subprocess.Popen[bytes]:
    with open(log_path, "ab") as log:
        return subprocess.Popen(
            command,
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def kill_and_restart(server: LiveServer) -> None:
    """Kill ``server``'s process at once (SIGKILL: no shutdown, as in a crash or an OOM kill)
    and start it again, same command, port, database and log; return once it answers."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(server.process.pid, signal.SIGKILL)
    server.process.wait()
    deadline = time.monotonic() + START_TIMEOUT
    while True:  # the port is free again once the killed process is gone, within moments
        try:
            with socket.create_connection(("127.0.0.1", server.port), timeout=0.2):
                pass
        except OSError:
            break
        if time.monotonic() > deadline:
            raise RuntimeError(f"port {server.port} still answers after the kill")
        time.sleep(0.05)
    server.process = _start(server.command, server.env, server.log_path)
    _wait_until_up(server)


def _stop(process: subprocess.Popen[bytes], wait: float) -> None:
    # The server leads its own process group: Hypercorn and Granian run workers as children.
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(wait)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def _run_migrate(env: dict[str, str]) -> None:
    migrate = subprocess.run(
        [sys.executable, "manage.py", "migrate", "--noinput"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    if migrate.returncode:
        raise RuntimeError(f"migrate failed:\n{migrate.stdout}\n{migrate.stderr}")


#: Migrated SQLite databases of this process, by settings module: each server's database
#: in its own directory starts as a copy, which saves a ``migrate`` process per server.
_MIGRATED: dict[str, Path] = {}
#: The ``DATABASE_URL``s of those copies.
_COPIED: set[str] = set()


def _migrate(env: dict[str, str], var_dir: Path) -> None:
    """Give the server about to start in ``var_dir`` a migrated database."""
    database = var_dir / "demo.sqlite3"
    if env["DATABASE_URL"] in _COPIED:
        return  # another server's database (two processes of one site)
    if env["DATABASE_URL"] != f"sqlite:///{database}":
        _run_migrate(env)  # a database the caller chose (PostgreSQL, a file of its own)
        return
    settings = env["DJANGO_SETTINGS_MODULE"]
    template = _MIGRATED.get(settings)
    if template is None:
        template_dir = Path(tempfile.mkdtemp(prefix="stripe-bridge-migrated-"))
        template = template_dir / "demo.sqlite3"
        _run_migrate(
            {**env, "DEMO_VAR_DIR": str(template_dir), "DATABASE_URL": f"sqlite:///{template}"}
        )
        if Path(f"{template}-wal").exists():  # not closed cleanly: copying it would lose rows
            _run_migrate(env)
            return
        _MIGRATED[settings] = template
    shutil.copyfile(template, database)
    _COPIED.add(env["DATABASE_URL"])


@contextlib.contextmanager
def run_server(
    kind: str = "daphne",
    env: dict[str, str] | None = None,
    *,
    app: str = DEMO_APP,
    access_log: bool = True,
    port: int | None = None,
    stop_wait: float = 10.0,
) -> Iterator[LiveServer]:
    """Start server ``kind`` (one of :data:`SERVERS`) serving ``app`` on a loopback port
    (``port``, else a free one); at the end, give it ``stop_wait`` seconds to shut down
    gracefully before killing it."""
    var_dir = Path(tempfile.mkdtemp(prefix=f"stripe-bridge-{kind}-"))
    port = port or free_port()
    full_env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "demo_project.settings",
        "DEMO_VAR_DIR": str(var_dir),
        "DATABASE_URL": f"sqlite:///{var_dir / 'demo.sqlite3'}",
        "DJANGO_ALLOWED_HOSTS": "127.0.0.1,localhost",
        "PYTHONUNBUFFERED": "1",
        **(env or {}),
    }
    _migrate(full_env, var_dir)
    log_path = var_dir / f"{kind}.log"
    command = tuple(server_command(kind, port, app, access_log))
    log_path.write_bytes(b"")
    process = _start(command, full_env, log_path)
    server = LiveServer(
        f"http://127.0.0.1:{port}", port, process, var_dir, log_path, full_env, kind, command
    )
    try:
        _wait_until_up(server)
        yield server
    finally:
        _stop(server.process, stop_wait)  # the latest process, after a kill_and_restart()


@dataclass
class HttpAnswer:
    """A server's answer: status, raw body, headers."""

    status: int
    body: bytes
    headers: dict[str, str]


#: Bytes ``http_request`` writes between two looks for an early answer.
SEND_PIECE = 64 * 1024


def http_request(
    method: str,
    url: str,
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
    timeout: float = 15,
) -> HttpAnswer:
    """``method url`` with ``body``; the answer, whatever its status.

    A server may answer before it has read the whole body (a 413 for a body over its limit)
    and close the connection: that is right of it, so the rest of the body is not sent and
    the answer already received is read, rather than failing on the write (``Broken pipe``,
    ``Connection reset``) as ``urllib`` does.
    """
    parts = urlsplit(url)
    path = parts.path + (f"?{parts.query}" if parts.query else "")
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=timeout)
    try:
        connection.putrequest(method, path or "/")
        for name, value in (headers or {}).items():
            connection.putheader(name, value)
        if body is not None:
            connection.putheader("Content-Length", str(len(body)))
        connection.endheaders()
        sock = connection.sock
        for start in range(0, len(body or b""), SEND_PIECE):
            if select.select([sock], [], [], 0)[0]:
                break  # the server answered (or closed) early: it reads no more
            try:
                sock.sendall((body or b"")[start : start + SEND_PIECE])
            except (BrokenPipeError, ConnectionResetError):
                break
        response = connection.getresponse()
        return HttpAnswer(response.status, response.read(), dict(response.headers))
    finally:
        connection.close()


def run_daphne(env: dict[str, str] | None = None) -> contextlib.AbstractContextManager[LiveServer]:
    """Start ``daphne demo_project.asgi:application`` on a free loopback port."""
    return run_server("daphne", env)
