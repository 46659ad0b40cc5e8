"""``./run demo``: migrate, start the offline Stripe if no real key is set, serve under Daphne.

Environment: ``STRIPE_API_KEY`` (a real ``sk_test_…`` key uses Stripe itself; then run
``stripe listen --forward-to 127.0.0.1:8000/api/services/Stripe/webhooks/handler`` and set
``STRIPE_WEBHOOK_SECRET``), ``DEMO_PORT`` (8000), and every variable demo_project/settings.py
reads (``DATABASE_URL``, ``REDIS_URL``, …).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import secrets
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from django_stripe_bridge.testing import StripeStandIn

ROOT = Path(__file__).resolve().parent.parent
HOST = "127.0.0.1"
WEBHOOK_PATH = "/api/services/Stripe/webhooks/handler"


def manage(*args: str, env: dict[str, str]) -> None:
    subprocess.run([sys.executable, "manage.py", *args], cwd=ROOT, env=env, check=True)  # noqa: S603


def standin_state(env: dict[str, str]) -> Path:
    """Where the stand-in keeps its objects: beside the demo's database, so that a restart
    finds the charges its payments refer to. A new SQLite database gets a new stand-in."""
    var_dir = Path(env.get("DEMO_VAR_DIR") or ROOT / "var")
    url = env.get("DATABASE_URL")
    if url:
        return var_dir / f"stripe-standin-{hashlib.sha256(url.encode()).hexdigest()[:12]}.pickle"
    state = var_dir / "demo.sqlite3.stripe-standin"
    if not (var_dir / "demo.sqlite3").exists():
        state.unlink(missing_ok=True)
    return state


@contextlib.contextmanager
def embedded_stripe(
    env: dict[str, str],
    port: int,
    state_file: Path | None = None,
    *,
    async_delay: float = 1.0,
) -> Iterator[StripeStandIn]:
    """Start the offline Stripe stand-in and point the demo at it, with its webhook registered.

    ``state_file`` keeps its objects across restarts (``./run demo``'s); without it the
    stand-in starts empty. ``async_delay``: seconds until what Stripe does "later" (a bank
    debit settling) happens.
    """
    from django_stripe_bridge.testing import TEST_API_KEY, TEST_PUBLISHABLE_KEY, run_stripe_standin

    with run_stripe_standin(state_file=state_file, async_delay=async_delay) as standin:
        secret = "whsec_demo_" + secrets.token_hex(16)
        standin.register_webhook(f"http://{HOST}:{port}{WEBHOOK_PATH}", secret, name="demo")
        env.update(
            STRIPE_API_KEY=TEST_API_KEY,
            STRIPE_PUBLISHABLE_KEY=TEST_PUBLISHABLE_KEY,
            STRIPE_API_BASE=standin.base_url,
            STRIPE_WEBHOOK_SECRET=secret,
        )
        print(
            f"Offline Stripe stand-in (localstripe) at {standin.base_url}; webhooks go to the demo."
        )
        if state_file is not None:
            print(
                f"Its payments are kept in {state_file}, with the demo's database: delete both "
                "to start afresh."
            )
        yield standin


ADMIN_CODE = """
import os
from django.contrib.auth import get_user_model
User = get_user_model()
password = os.environ["DEMO_ADMIN_PASSWORD"]
user = User.objects.filter(username="admin").first()
if user is None and not User.objects.filter(is_superuser=True).exists():
    User.objects.create_superuser("admin", "admin@example.com", password)
    print("created")
elif user is not None and user.check_password(password):
    print("unchanged")
else:
    print("other")
"""


def ensure_admin(env: dict[str, str], port: int) -> None:
    """Create the ``admin`` superuser once, and say how to log in on every start.

    Its random password is kept in the demo's var directory (``DEMO_VAR_DIR``), so that it
    can be printed again; if it was changed since, the way to set another is printed.
    """
    var_dir = Path(env.get("DEMO_VAR_DIR") or ROOT / "var")
    var_dir.mkdir(parents=True, exist_ok=True)
    stored = var_dir / "demo-admin-password"
    password = stored.read_text().strip() if stored.exists() else secrets.token_urlsafe(9)
    result = subprocess.run(  # noqa: S603
        [sys.executable, "manage.py", "shell", "--no-imports", "-c", ADMIN_CODE],
        cwd=ROOT,
        env={**env, "DEMO_ADMIN_PASSWORD": password},
        check=True,
        capture_output=True,
        text=True,
    )
    outcome = result.stdout.strip().splitlines()[-1] if result.stdout.strip() else ""
    if outcome == "created":
        stored.write_text(password + "\n")
        stored.chmod(0o600)
    admin_url = f"http://{HOST}:{port}/admin/"
    if outcome in ("created", "unchanged"):
        print(f"Admin: {admin_url}  user: admin  password: {password}  (kept in {stored})")
    else:
        print(
            f"Admin: {admin_url}  The admin password is not the one this demo made. Set one with\n"
            "  .venv/bin/python manage.py changepassword admin\n"
            "(with the same environment variables as ./run demo)."
        )


def uses_configured_stripe(env: dict[str, str]) -> bool:
    """Whether the environment names a Stripe to use (a secret key, for Stripe itself or for
    the server ``STRIPE_API_BASE`` names); otherwise the demo embeds the offline stand-in."""
    return env.get("STRIPE_API_KEY", "").startswith(("sk_", "rk_"))


class Stop(Exception):
    """SIGTERM or SIGHUP arrived: stop what was started, as Ctrl-C does."""


def _stop(signum: int, frame: FrameType | None) -> None:
    # Once: a second signal must not interrupt the clean-up the first one started.
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    raise Stop(signal.Signals(signum).name)


@contextlib.contextmanager
def daphne(env: dict[str, str], port: int) -> Iterator[subprocess.Popen[bytes]]:
    """Daphne serving the demo; terminated (then killed, if it hangs) when the block ends."""
    process = subprocess.Popen(  # noqa: S603
        [
            sys.executable,
            "-m",
            "daphne",
            "-b",
            HOST,
            "-p",
            str(port),
            "demo_project.asgi:application",
        ],
        cwd=ROOT,
        env=env,
    )
    try:
        yield process
    finally:
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def main() -> int:
    # A process manager, `timeout` or `kill` sends SIGTERM to this process only: without a
    # handler Python would exit at once and leave Daphne (and the stand-in) running.
    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGHUP, _stop)
    sys.stdout.reconfigure(line_buffering=True)  # type: ignore[union-attr]
    try:
        return serve()
    except (KeyboardInterrupt, Stop):
        print("Stopped.")
        return 0


def serve() -> int:
    port = int(os.environ.get("DEMO_PORT", "8000"))
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "demo_project.settings"}
    real_stripe = uses_configured_stripe(env)
    if real_stripe and not env.get("STRIPE_API_BASE") and not env.get("STRIPE_WEBHOOK_SECRET"):
        print(
            "Using Stripe itself. To receive its webhooks here, run\n"
            f"  stripe listen --forward-to {HOST}:{port}{WEBHOOK_PATH}\n"
            "and restart with STRIPE_WEBHOOK_SECRET set to the whsec_… secret it prints."
        )
    stripe = (
        contextlib.nullcontext() if real_stripe else embedded_stripe(env, port, standin_state(env))
    )
    with stripe:
        manage("migrate", "--noinput", "-v", "0", env=env)
        ensure_admin(env, port)
        print(f"Demo: http://{HOST}:{port}/   Ctrl-C stops.", flush=True)
        with daphne(env, port) as server:
            return server.wait()


if __name__ == "__main__":
    sys.exit(main())
