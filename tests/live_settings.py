"""The demo's settings, with ``STRIPE_BRIDGE`` entries a live-server test gives as JSON in
``STRIPE_BRIDGE_TEST`` (those the demo's environment has no variable for: more webhook
endpoints, short retry delays). ``DJANGO_SETTINGS_MODULE=tests.live_settings``."""

import json
import os

from demo_project.settings import *  # noqa: F403
from demo_project.settings import STRIPE_BRIDGE as DEMO_BRIDGE

STRIPE_BRIDGE = {**DEMO_BRIDGE, **json.loads(os.environ.get("STRIPE_BRIDGE_TEST") or "{}")}
