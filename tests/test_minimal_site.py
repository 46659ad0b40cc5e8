"""The app in a site configured only as the README says (no drf-spectacular settings)."""

import json
import os
import subprocess
import sys

from tests.live import ROOT

SCRIPT = """
import json, django
django.setup()
from django.core.management import call_command
call_command("migrate", verbosity=0)
from django.test import Client
client = Client()
out = {}
out["schema"] = client.get("/api/services/Stripe/schema?format=json").status_code
out["schema_yaml"] = client.get("/api/services/Stripe/schema").status_code
out["charge"] = client.post(
    "/api/services/Stripe/charge", {"amount": 0}, content_type="application/json"
).status_code
out["transaction"] = client.get("/api/services/Stripe/transactions/ch_missing").status_code
out["webhook"] = client.post(
    "/api/services/Stripe/webhooks/handler", b"{}", content_type="application/json"
).status_code
print(json.dumps(out))
"""


def test_readme_setup_serves_every_endpoint(tmp_path):
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "tests.minimal_site.settings",
        "MINIMAL_SITE_DB": str(tmp_path / "db.sqlite3"),
    }
    check = subprocess.run(
        [sys.executable, "manage.py", "check", "--fail-level", "WARNING"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    # Only the in-memory layer outside DEBUG is reported.
    assert "stripe_bridge.W005" in check.stderr
    assert "stripe_bridge.E" not in check.stderr
    run = subprocess.run(
        [sys.executable, "-c", SCRIPT],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == 0, run.stderr
    statuses = json.loads(run.stdout.strip().splitlines()[-1])
    assert statuses == {
        "schema": 200,
        "schema_yaml": 200,
        "charge": 400,
        "transaction": 404,
        "webhook": 400,
    }, run.stderr[-2000:]
