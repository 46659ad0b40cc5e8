"""From ``pip install`` to a live payment event, following the README literally.

The package is built from this checkout (sdist, then the wheel from it, as ``python -m
build`` does) and checked as an index would check it. A new virtual environment installs
the wheel with the README's extras; ``django-admin startproject mysite`` makes a site; the
README's "Configure" blocks are applied to it exactly as written (each block's first line
says which file and how). Then the README's commands: ``check``, ``migrate``,
``runserver`` (websocket, static files, a signed webhook, the admin), and the production
commands (``collectstatic``, ``daphne``) with ``DEBUG = False``.

If the README changes, this test applies the changed text: it breaks when the README does.
"""

from __future__ import annotations

import contextlib
import http.cookiejar
import json
import os
import queue
import re
import shlex
import subprocess
import sys
import tarfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from django_stripe_bridge import __version__
from django_stripe_bridge.testing import sign_payload
from tests.live import ROOT, free_port

README = (ROOT / "README.md").read_text()
SECTION = README.split("## Add it to your Django site", 1)[1].split("\n## ", 1)[0]
PAYLOAD = (ROOT / "tests" / "payloads" / "charge.succeeded.json").read_bytes()
WEBHOOK_SECRET = "whsec_readme_site"
ADMIN_PASSWORD = "readme-admin-pw-1"
PIP_TIMEOUT = 600


def run(args: list[str], cwd: Path, env: dict[str, str], timeout: float = 120):
    result = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, f"{shlex.join(args)}:\n{result.stdout}\n{result.stderr}"
    return result


# --- the package ----------------------------------------------------------------------------


@dataclass
class Built:
    sdist: Path
    wheel: Path


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> Built:
    """``python -m build``: the sdist, then the wheel built from the unpacked sdist."""
    out = tmp_path_factory.mktemp("dist")
    run([sys.executable, "-m", "build", "--outdir", str(out), str(ROOT)], ROOT, dict(os.environ))
    (sdist,) = out.glob("*.tar.gz")
    (wheel,) = out.glob("*.whl")
    return Built(sdist, wheel)


def test_twine_check_passes(built):
    result = run(
        [sys.executable, "-m", "twine", "check", "--strict", str(built.sdist), str(built.wheel)],
        ROOT,
        dict(os.environ),
    )
    assert result.stdout.count("PASSED") == 2, result.stdout


def test_the_version_has_one_source(built):
    assert built.wheel.name == f"django_stripe_bridge-{__version__}-py3-none-any.whl"
    # The README's install line names the wheel that the build makes.
    assert f"dist/{built.wheel.name}[" in SECTION
    assert re.search(
        r'__version__ = "[^"]+"', (ROOT / "django_stripe_bridge/__init__.py").read_text()
    )
    assert (
        "version ="
        not in (ROOT / "pyproject.toml").read_text().split("[project]")[1].split("\n[", 1)[0]
    )
    with zipfile.ZipFile(built.wheel) as wheel:
        metadata = wheel.read(f"django_stripe_bridge-{__version__}.dist-info/METADATA").decode()
    assert f"\nVersion: {__version__}\n" in metadata


def test_the_wheel_holds_the_app_and_nothing_else(built):
    with zipfile.ZipFile(built.wheel) as wheel:
        names = set(wheel.namelist())
    package = ROOT / "django_stripe_bridge"
    shipped = {
        path.relative_to(ROOT).as_posix()
        for path in package.rglob("*")
        if path.is_file() and "__pycache__" not in path.parts
    }
    assert shipped - names == set(), "files of the package missing from the wheel"
    assert "django_stripe_bridge/py.typed" in names
    assert "django_stripe_bridge/static/django_stripe_bridge/stripe-bridge.js" in names
    assert "django_stripe_bridge/migrations/0001_initial.py" in names
    # Templates, when the app has any, are shipped by the same rule as static files.
    assert {n for n in shipped if "/templates/" in n} <= names
    top = {name.split("/", 1)[0] for name in names}
    assert top == {"django_stripe_bridge", f"django_stripe_bridge-{__version__}.dist-info"}
    assert not [n for n in names if n.endswith((".pyc", ".sqlite3"))]


def test_the_sdist_holds_the_tests_and_docs_that_go_with_it(built):
    with tarfile.open(built.sdist) as sdist:
        names = {name.split("/", 1)[1] for name in sdist.getnames() if "/" in name}
    for path in ("LICENSE", "README.md", "CHANGELOG.md", "mkdocs.yml", "tests/conftest.py"):
        assert path in names, path
    assert "docs/settings.md" in names
    assert not [n for n in names if "__pycache__" in n or n.endswith(".pyc")]


# --- the README's blocks ---------------------------------------------------------------------

BLOCK = re.compile(r"```(\w+)\n(.*?)```", re.DOTALL)
TARGET = re.compile(r"# (mysite/[\w./]+): (add at the end|replace the whole file)\n")


def readme_edits() -> list[tuple[str, str, str]]:
    """``(file, action, code)`` for each Python block of "Configure", in the README's order."""
    edits = []
    for language, code in BLOCK.findall(SECTION):
        if language != "python":
            continue
        match = TARGET.match(code)
        assert match, f"a Python block that does not say where it goes:\n{code}"
        edits.append((match.group(1), match.group(2), code))
    return edits


def readme_shell(after: str) -> list[str]:
    """The lines of the first ``sh`` block after the text ``after``."""
    rest = SECTION.split(after, 1)[1]
    language, code = BLOCK.search(rest).groups()  # type: ignore[union-attr]
    assert language == "sh"
    return [line for line in code.splitlines() if line]


def readme_commands(after: str) -> list[str]:
    """The command lines of the first ``sh`` block after the text ``after``."""
    return [line for line in readme_shell(after) if not line.startswith("export ")]


def readme_exports(after: str, **placeholders: str) -> dict[str, str]:
    """The variables that block exports: its own values, or ``placeholders``' for those it
    leaves to the reader (``…``). Every variable with a placeholder must have one."""
    exported = {}
    for line in readme_shell(after):
        if line.startswith("export "):
            exported.update(item.split("=", 1) for item in shlex.split(line)[1:])
    values = {
        name: placeholders[name] if "…" in value else value for name, value in exported.items()
    }
    assert set(placeholders) <= set(values), "variables the README does not export"
    return values


def test_the_readme_says_where_each_block_goes():
    files = [edit[0] for edit in readme_edits()]
    assert files[0] == "mysite/settings.py"
    assert {"mysite/settings.py", "mysite/urls.py", "mysite/asgi.py"} <= set(files)


def install_extras() -> str:
    match = re.search(r'pip install "django-stripe-bridge\[([\w,]+)\]"', SECTION)
    assert match, "the README's future install line"
    return match.group(1)


# --- the site --------------------------------------------------------------------------------


@dataclass
class Site:
    venv: Path
    root: Path
    env: dict[str, str]

    @property
    def python(self) -> str:
        return str(self.venv / "bin" / "python")

    def manage(self, *args: str, env: dict[str, str] | None = None, timeout: float = 120):
        return run([self.python, "manage.py", *args], self.root, env or self.env, timeout)


def clean_env(**extra: str) -> dict[str, str]:
    """The environment of a shell in a new project: nothing of the test suite's Django."""
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("DJANGO_", "STRIPE_", "VIRTUAL_ENV", "PYTHON"))
        and key not in ("DATABASE_URL", "REDIS_URL")
    }
    env["PYTHONUNBUFFERED"] = "1"
    return {**env, **extra}


@pytest.fixture(scope="module")
def site(built, tmp_path_factory, redis_url) -> Site:
    """A new venv with the wheel, and ``startproject mysite`` changed as the README says."""
    base = tmp_path_factory.mktemp("readme-site")
    venv = base / "venv"
    run([sys.executable, "-m", "venv", str(venv)], base, clean_env())
    python = str(venv / "bin" / "python")
    # The README's extras, and `listen` for the command-line client it shows.
    requirement = f"{built.wheel}[{install_extras()},listen]"
    run([python, "-m", "pip", "install", "--quiet", requirement], base, clean_env(), PIP_TIMEOUT)
    run([str(venv / "bin" / "django-admin"), "startproject", "mysite", "."], base, clean_env())
    for name, action, code in readme_edits():
        path = base / name
        if action == "replace the whole file":
            path.write_text(code)
        else:
            path.write_text(path.read_text() + "\n" + code)
    exported = readme_exports(
        "Then, in development:",
        STRIPE_API_KEY="sk_test_readme_site",
        STRIPE_WEBHOOK_SECRET=WEBHOOK_SECRET,
    )
    assert exported["DJANGO_DEBUG"] == "1"
    return Site(venv, base, clean_env(REDIS_URL=redis_url, **exported))


def test_the_installed_package_is_the_wheel_not_the_checkout(site):
    code = "import django_stripe_bridge as m; print(m.__file__)"
    location = run([site.python, "-c", code], site.root, site.env).stdout.strip()
    assert str(site.venv) in location, location


def test_check_without_secrets_warns_and_does_not_crash(site):
    env = {k: v for k, v in site.env.items() if not k.startswith("STRIPE_")}
    result = site.manage("check", env=env)
    output = result.stdout + result.stderr
    assert "stripe_bridge.W001" in output and "stripe_bridge.W002" in output, output


def test_check_with_the_secrets_reports_nothing(site):
    result = site.manage("check", "--fail-level", "WARNING")
    assert "no issues" in result.stdout, result.stdout + result.stderr


def get(url: str, opener: urllib.request.OpenerDirector | None = None) -> tuple[int, str]:
    try:
        with (opener or urllib.request.build_opener()).open(url, timeout=10) as response:
            return response.status, response.read().decode(errors="replace")
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode(errors="replace")


@contextlib.contextmanager
def serving(
    args: list[str], site: Site, port: int, env: dict[str, str] | None = None
) -> Iterator[str]:
    """Run a server command of the site until the block ends; yields its base URL."""
    log = site.root / f"server-{port}.log"
    with open(log, "wb") as out:
        process = subprocess.Popen(
            args, cwd=site.root, env=env or site.env, stdout=out, stderr=subprocess.STDOUT
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while get_or_none(url + "/admin/login/") != 200:
            assert process.poll() is None, log.read_text()
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.2)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    assert "Traceback" not in log.read_text(), log.read_text()


def get_or_none(url: str) -> int | None:
    try:
        return get(url)[0]
    except OSError:
        return None


class Listener:
    """``python -m django_stripe_bridge.listen`` from the site's venv, read line by line."""

    def __init__(self, site: Site, url: str, selector: str, replay: str) -> None:
        args = [site.python, "-m", "django_stripe_bridge.listen", url]
        args += ["--selector", selector, "--replay", replay, "--max-attempts", "3"]
        self.process = subprocess.Popen(
            args, env=site.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        self.stdout: queue.Queue[str] = queue.Queue()
        self.stderr: queue.Queue[str] = queue.Queue()
        for stream, lines in (
            (self.process.stdout, self.stdout),
            (self.process.stderr, self.stderr),
        ):
            threading.Thread(target=self._pump, args=(stream, lines), daemon=True).start()

    @staticmethod
    def _pump(stream, lines: queue.Queue[str]) -> None:
        for line in stream:
            lines.put(line)

    def wait_for(self, lines: queue.Queue[str], predicate, timeout: float = 20) -> str:
        deadline = time.monotonic() + timeout
        seen = []
        while time.monotonic() < deadline:
            try:
                line = lines.get(timeout=0.2)
            except queue.Empty:
                continue
            seen.append(line)
            if predicate(line):
                return line
        raise AssertionError(f"listen printed nothing matching in {timeout}s: {seen}")

    def close(self) -> None:
        self.process.terminate()
        self.process.wait(10)


def login(url: str) -> urllib.request.OpenerDirector:
    """An opener holding a staff session of the admin, logged in through its form."""
    jar = http.cookiejar.CookieJar()
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
    status, page = get(url + "/admin/login/", opener)
    assert status == 200
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page).group(1)  # type: ignore[union-attr]
    form = urllib.parse.urlencode(
        {
            "csrfmiddlewaretoken": token,
            "username": "admin",
            "password": ADMIN_PASSWORD,
            "next": "/admin/",
        }
    ).encode()
    request = urllib.request.Request(
        url + "/admin/login/", data=form, headers={"Referer": url + "/admin/login/"}
    )
    with opener.open(request, timeout=10) as response:
        assert response.url.endswith("/admin/"), "the login form did not log in"
    return opener


def test_the_site_charges_nothing_but_stores_and_pushes_a_signed_webhook(site):
    """Development: migrate, runserver; the websocket, static files, a webhook, the admin."""
    event = json.loads(PAYLOAD)
    charge_id = event["data"]["object"]["id"]
    site.manage("migrate", "--noinput")
    env = {**site.env, "DJANGO_SUPERUSER_PASSWORD": ADMIN_PASSWORD}
    site.manage(
        "createsuperuser", "--noinput", "--username", "admin", "--email", "a@example.com", env=env
    )
    port = free_port()
    commands = readme_commands("Then, in development:")
    assert commands[-1] == "python manage.py runserver"
    runserver = [site.python, "manage.py", "runserver", f"127.0.0.1:{port}", "--noreload"]
    with serving(runserver, site, port) as url:
        status, script = get(url + "/static/django_stripe_bridge/stripe-bridge.js")
        assert status == 200 and "StripeBridge" in script, "runserver does not serve static files"
        listener = Listener(
            site, f"ws://127.0.0.1:{port}/ws/stripe/", f"id = '{charge_id}'", "none"
        )
        try:
            listener.wait_for(listener.stderr, lambda line: "subscribed" in line)
            request = urllib.request.Request(
                url + "/api/services/Stripe/webhooks/handler",
                data=PAYLOAD,
                headers={
                    "Content-Type": "application/json",
                    "Stripe-Signature": sign_payload(PAYLOAD, WEBHOOK_SECRET),
                },
            )
            with urllib.request.urlopen(request, timeout=10) as response:
                assert response.status == 200
            line = listener.wait_for(listener.stdout, lambda line: line.startswith("{"))
        finally:
            listener.close()
        message = json.loads(line)
        assert message["headers"]["id"] == charge_id
        assert message["headers"]["type"] == "charge.succeeded"
        assert message["replayed"] is False

        status, changelist = get(url + "/admin/django_stripe_bridge/stripeevent/", login(url))
        assert status == 200 and event["id"] in changelist


def test_the_production_commands_serve_static_files_and_websockets(site):
    """``DEBUG = False`` from the README's own lines and variables: ``check --deploy``,
    collectstatic and the daphne command; WhiteNoise, the websocket."""
    after = "In production,"
    env = {k: v for k, v in site.env.items() if k != "DJANGO_DEBUG"}
    env.update(
        readme_exports(
            after,
            DJANGO_SECRET_KEY="readme-production-key-" + "x" * 40,
            STRIPE_API_KEY="sk_live_readme_site",
            STRIPE_WEBHOOK_SECRET=WEBHOOK_SECRET,
        )
    )
    env["DJANGO_ALLOWED_HOSTS"] = "127.0.0.1"  # the README's example.com, here
    show = "from django.conf import settings as s; "
    show += "print(s.DEBUG, s.ALLOWED_HOSTS, s.SESSION_COOKIE_SECURE)"
    shown = run([site.python, "manage.py", "shell", "-c", show], site.root, env).stdout
    assert shown.strip().splitlines()[-1] == "False ['127.0.0.1'] True"
    # Without its secret key the production site refuses to start, and says why.
    no_key = {k: v for k, v in env.items() if k != "DJANGO_SECRET_KEY"}
    refused = subprocess.run(
        [site.python, "manage.py", "check"], cwd=site.root, env=no_key, capture_output=True
    )
    assert refused.returncode != 0 and b"Set DJANGO_SECRET_KEY" in refused.stderr
    site.manage("migrate", "--noinput", env=env)
    port = free_port()
    server = None
    for line in readme_commands(after):
        args = shlex.split(line)
        if args[0] == "daphne":
            assert args[args.index("-b") + 1] == "127.0.0.1", "behind a proxy, on loopback"
            args = [str(site.venv / "bin" / "daphne"), *args[1:]]
            args[args.index("-p") + 1] = str(port)
            server = args
        else:
            assert args[:2] == ["python", "manage.py"], line
            result = site.manage(*args[2:], env=env)
            if "--deploy" in args:
                output = result.stdout + result.stderr
                assert "stripe_bridge." not in output, output
                assert "security.W004" in output  # Django's own: the checks did run
    assert server, "the README's production server command"
    with serving(server, site, port, env) as url:
        for path in (
            "/static/admin/css/base.css",
            "/static/django_stripe_bridge/stripe-bridge.js",
        ):
            status, _ = get(url + path)
            assert status == 200, path
        status, page = get(url + "/no/such/page")
        assert status == 404 and "Traceback" not in page
        charge_id = json.loads(PAYLOAD)["data"]["object"]["id"]
        listener = Listener(
            site, f"ws://127.0.0.1:{port}/ws/stripe/", f"id = '{charge_id}'", "latest"
        )
        try:
            listener.wait_for(listener.stderr, lambda line: "subscribed" in line)
            line = listener.wait_for(listener.stdout, lambda line: line.startswith("{"))
        finally:
            listener.close()
        message = json.loads(line)
        assert (message["headers"]["id"], message["replayed"]) == (charge_id, True)
