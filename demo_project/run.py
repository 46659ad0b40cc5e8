"""``./run demo``: migrate, start the offline Stripe if no real key is set, serve under Daphne.

Environment: ``STRIPE_API_KEY`` (a real ``sk_test_…`` key uses Stripe itself; then run
``stripe listen --forward-to 127.0.0.1:8000/api/services/Stripe/webhooks/handler`` and set
``STRIPE_WEBHOOK_SECRET``), ``DEMO_PORT`` (8000), and every variable demo_project/settings.py
reads (``DATABASE_URL``, ``REDIS_URL``, …).
"""

from __future__ import annotations

import contextlib
import os
import secrets
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
HOST = "127.0.0.1"
WEBHOOK_PATH = "/api/services/Stripe/webhooks/handler"


def manage(*args: str, env: dict[str, str]) -> None:
    subprocess.run([sys.executable, "manage.py", *args], cwd=ROOT, env=env, check=True)  # noqa: S603


@contextlib.contextmanager
def embedded_stripe(env: dict[str, str], port: int) -> Iterator[None]:
    """Start the offline Stripe stand-in and point the demo at it, with its webhook registered."""
    from django_stripe_bridge.testing import TEST_API_KEY, TEST_PUBLISHABLE_KEY, run_stripe_standin

    with run_stripe_standin() as standin:
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
        yield


def ensure_admin(env: dict[str, str]) -> None:
    """Create an ``admin`` superuser with a random password, once, and print it."""
    code = (
        "import os\n"
        "from django.contrib.auth import get_user_model\n"
        "User = get_user_model()\n"
        "if not User.objects.filter(is_superuser=True).exists():\n"
        "    password = os.environ['DEMO_ADMIN_PASSWORD']\n"
        "    User.objects.create_superuser('admin', 'admin@example.com', password)\n"
        "    print('Created the admin user: admin /', password)\n"
    )
    admin_env = {**env, "DEMO_ADMIN_PASSWORD": secrets.token_urlsafe(9)}
    manage("shell", "--no-imports", "-c", code, env=admin_env)


def uses_configured_stripe(env: dict[str, str]) -> bool:
    """Whether the environment names a Stripe to use (a secret key, for Stripe itself or for
    the server ``STRIPE_API_BASE`` names); otherwise the demo embeds the offline stand-in."""
    return env.get("STRIPE_API_KEY", "").startswith(("sk_", "rk_"))


def main() -> int:
    port = int(os.environ.get("DEMO_PORT", "8000"))
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "demo_project.settings"}
    real_stripe = uses_configured_stripe(env)
    if real_stripe and not env.get("STRIPE_API_BASE") and not env.get("STRIPE_WEBHOOK_SECRET"):
        print(
            "Using Stripe itself. To receive its webhooks here, run\n"
            f"  stripe listen --forward-to {HOST}:{port}{WEBHOOK_PATH}\n"
            "and restart with STRIPE_WEBHOOK_SECRET set to the whsec_… secret it prints."
        )
    stripe = contextlib.nullcontext() if real_stripe else embedded_stripe(env, port)
    with stripe:
        manage("migrate", "--noinput", "-v", "0", env=env)
        ensure_admin(env)
        print(f"Demo: http://{HOST}:{port}/   admin: http://{HOST}:{port}/admin/   Ctrl-C stops.")
        daphne = subprocess.Popen(  # noqa: S603
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
            return daphne.wait()
        except KeyboardInterrupt:
            daphne.terminate()
            daphne.wait(10)
            return 0


if __name__ == "__main__":
    sys.exit(main())
