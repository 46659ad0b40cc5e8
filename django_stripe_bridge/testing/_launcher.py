"""Start and drive the stand-in subprocess (standard library only)."""

from __future__ import annotations

import contextlib
import json
import os
import queue
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import IO, Any

#: The line the subprocess prints once it listens, followed by its base URL.
READY_PREFIX = "stripe-standin listening on "

#: A secret key the stand-in accepts (it accepts any ``sk_…`` key).
TEST_API_KEY = "sk_test_standin_4eC39HqLyjWDarjtT1zdp7dc"
#: A publishable key for pages that load Stripe.js against the stand-in.
TEST_PUBLISHABLE_KEY = "pk_test_standin_TYooMQauvdEDq54NiTphI7jx"

_PACKAGE_ROOT = Path(__file__).resolve().parents[2]


class StandInError(RuntimeError):
    """The stand-in failed to start, or answered a configuration call with an error."""


class StripeStandIn:
    """A running offline Stripe (localstripe, extended) in a subprocess.

    Use it as a context manager, or call ``start()`` and ``stop()``:

        with StripeStandIn() as standin:
            client = standin.client()          # a stripe.StripeClient pointed at it
            client.v1.charges.create({"amount": 500, "currency": "usd", "source": "tok_visa"})

    ``port=None`` lets the subprocess pick a free port. ``webhook_delay`` is the time between
    an event and its webhook deliveries (localstripe's ~1 s by default); ``async_delay`` the
    time until what Stripe does "later" happens (refunds that settle or fail, disputes that
    open or close; ``settle()`` does it at once). ``state_file`` keeps the objects in that
    file across restarts (the demo's; default: in memory only). ``cwd`` and ``env``
    (added to this process's environment) are for the subprocess.
    """

    def __init__(
        self,
        port: int | None = None,
        host: str = "127.0.0.1",
        *,
        api_key: str = TEST_API_KEY,
        webhook_delay: float = 1.0,
        async_delay: float = 1.0,
        startup_timeout: float = 15.0,
        stop_timeout: float = 5.0,
        verbose: bool = False,
        python: str | None = None,
        cwd: str | os.PathLike[str] | None = None,
        env: Mapping[str, str] | None = None,
        state_file: str | os.PathLike[str] | None = None,
    ) -> None:
        self.host = host
        self.state_file = state_file
        self.api_key = api_key
        self.webhook_delay = webhook_delay
        self.async_delay = async_delay
        self.startup_timeout = startup_timeout
        self.stop_timeout = stop_timeout
        self.verbose = verbose
        self._requested_port = port or 0
        self._python = python or sys.executable
        self._cwd = cwd
        self._env = dict(env or {})
        self._process: subprocess.Popen[bytes] | None = None
        self._stderr: IO[bytes] | None = None
        self._base_url: str | None = None

    # --- lifecycle --------------------------------------------------------------------------

    @property
    def command(self) -> list[str]:
        """The command line that starts the subprocess."""
        command = [
            self._python,
            "-m",
            "django_stripe_bridge.testing.standin",
            "--host",
            self.host,
            "--port",
            str(self._requested_port),
            "--webhook-delay",
            str(self.webhook_delay),
            "--async-delay",
            str(self.async_delay),
            "--exit-on-stdin-eof",
        ]
        if self.verbose:
            command.append("--verbose")
        if self.state_file is not None:
            command += ["--state", os.fspath(self.state_file)]
        return command

    def start(self) -> StripeStandIn:
        """Start the subprocess and wait (``startup_timeout``) until it answers."""
        if self._process is not None:
            raise StandInError("the stand-in is already running")
        env = {**os.environ, **self._env, "PYTHONUNBUFFERED": "1"}
        env["PYTHONPATH"] = os.pathsep.join(
            [str(_PACKAGE_ROOT), *filter(None, [env.get("PYTHONPATH")])]
        )
        self._stderr = tempfile.TemporaryFile()  # noqa: SIM115 - closed in stop()
        self._process = subprocess.Popen(  # noqa: S603 - our own module, no shell
            self.command,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            cwd=self._cwd,
            env=env,
        )
        try:
            self._base_url = self._wait_until_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_until_ready(self) -> str:
        assert self._process is not None and self._process.stdout is not None
        lines: queue.Queue[bytes] = queue.Queue()
        stdout = self._process.stdout

        def pump() -> None:  # keep reading so the pipe never fills up
            for line in iter(stdout.readline, b""):
                lines.put(line)

        threading.Thread(target=pump, name="stripe-standin-stdout", daemon=True).start()
        deadline = time.monotonic() + self.startup_timeout
        base_url = None
        while base_url is None:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                self._fail(f"did not start within {self.startup_timeout:g} s")
            try:
                line = lines.get(timeout=min(0.1, remaining)).decode(errors="replace").strip()
            except queue.Empty:
                if self._process.poll() is not None:
                    self._fail(f"exited with status {self._process.returncode}")
                continue
            if line.startswith(READY_PREFIX):
                base_url = line[len(READY_PREFIX) :]
        while True:  # it listens; make sure it answers
            try:
                self._request("GET", "/_config/health", base_url=base_url, timeout=2)
                return base_url
            except (OSError, StandInError) as exc:
                if time.monotonic() > deadline:
                    self._fail(f"listens on {base_url} but does not answer ({exc})")
                time.sleep(0.05)

    def _fail(self, what: str) -> None:
        raise StandInError(
            f"The Stripe stand-in ({' '.join(self.command)}) {what}.\n"
            f"--- its stderr ---\n{self.stderr_text() or '(empty)'}"
        )

    def stop(self) -> None:
        """Terminate the subprocess (killed after ``stop_timeout`` seconds)."""
        process, self._process = self._process, None
        if process is not None:
            if process.stdin is not None:
                with contextlib.suppress(OSError):
                    process.stdin.close()
            if process.poll() is None:
                process.terminate()
                try:
                    process.wait(self.stop_timeout)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait(self.stop_timeout)
            if process.stdout is not None:
                process.stdout.close()
        self._last_stderr = self.stderr_text()
        if self._stderr is not None:
            self._stderr.close()
            self._stderr = None

    def __enter__(self) -> StripeStandIn:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # --- facts --------------------------------------------------------------------------------

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:PORT``: pass it as the stripe library's API base."""
        if self._base_url is None:
            raise StandInError("the stand-in is not started")
        return self._base_url

    @property
    def port(self) -> int:
        return int(self.base_url.rsplit(":", 1)[1])

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    def stderr_text(self) -> str:
        """What the subprocess wrote to stderr so far (its log)."""
        if self._stderr is None:
            return getattr(self, "_last_stderr", "")
        self._stderr.flush()
        self._stderr.seek(0)
        return self._stderr.read().decode(errors="replace")

    # --- configuration calls ------------------------------------------------------------------

    def _request(
        self,
        method: str,
        path: str,
        data: Mapping[str, Any] | None = None,
        *,
        base_url: str | None = None,
        timeout: float = 10,
    ) -> Any:
        body = json.dumps(data).encode() if data is not None else None
        request = urllib.request.Request(  # noqa: S310 - a loopback http URL we built
            (base_url or self.base_url) + path,
            data=body,
            method=method,
            headers={
                "Authorization": f"Bearer {self.api_key}",
                "Content-Type": "application/json",
            },
        )
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310
                raw = response.read()
        except urllib.error.HTTPError as exc:
            detail = exc.read().decode(errors="replace")
            raise StandInError(f"{method} {path} answered {exc.code}: {detail}") from None
        if not raw:
            return None
        try:
            return json.loads(raw)
        except ValueError:
            return raw.decode(errors="replace")

    def reset(self, *, webhooks: bool = False) -> None:
        """Forget every object, event and idempotency key (and the webhooks if asked)."""
        self._request("DELETE", "/_config/data")
        if webhooks:
            self._request("DELETE", "/_config/webhooks")

    def register_webhook(
        self,
        url: str,
        secret: str,
        events: Sequence[str] | None = None,
        name: str = "default",
        *,
        connect: bool = False,
    ) -> None:
        """Send events (all, or those in ``events``; ``"*"`` is all) to ``url``, signed with
        ``secret`` like Stripe signs (``Stripe-Signature: t=…,v1=…``). A ``name`` already
        registered is replaced. ``connect=True`` makes it a Connect webhook: it gets the
        connected accounts' events (each with ``account``) instead of the platform's."""
        payload: dict[str, Any] = {"url": url, "secret": secret, "connect": connect}
        if events is not None:
            payload["events"] = list(events)
        self._request("POST", f"/_config/webhooks/{name}", payload)

    def unregister_webhook(self, name: str | None = None) -> None:
        """Stop sending to the webhook ``name`` (to every webhook when ``None``)."""
        self._request("DELETE", "/_config/webhooks" + (f"/{name}" if name else ""))

    def webhook_deliveries(self) -> list[dict[str, Any]]:
        """Delivery attempts so far: event id and type, webhook name, HTTP status or error."""
        return list(self._request("GET", "/_config/webhooks")["deliveries"])

    def authenticate_payment_intent(
        self, payment_intent: str, client_secret: str, *, success: bool = True
    ) -> dict[str, Any]:
        """Finish (or fail) 3-D Secure for a PaymentIntent in ``requires_action``, as the
        customer would in the browser. Returns the PaymentIntent (raises on a decline)."""
        result = self._request(
            "POST",
            f"/v1/payment_intents/{payment_intent}/_authenticate",
            {"client_secret": client_secret, "success": success},
        )
        return dict(result)

    def settle(self) -> int:
        """Do now what Stripe does "some time later" (refunds that settle or fail, disputes
        that open, close or escalate), oldest first; returns how many changes ran."""
        return int(self._request("POST", "/_standin/settle", {})["ran"])

    def expire_authorization(self, charge_or_payment_intent: str) -> dict[str, Any]:
        """Let an uncaptured authorization expire now (Stripe: after 7 days), as Stripe
        does: ``charge.expired`` and, for a PaymentIntent, ``payment_intent.canceled``.
        Returns the charge."""
        result = self._request(
            "POST", f"/_standin/authorizations/{charge_or_payment_intent}/expire", {}
        )
        return dict(result)

    def client(self, **options: Any) -> Any:
        """A ``stripe.StripeClient`` pointed at the stand-in (no network retries)."""
        import stripe

        options.setdefault("max_network_retries", 0)
        options.setdefault("base_addresses", {"api": self.base_url})
        return stripe.StripeClient(self.api_key, **options)


@contextlib.contextmanager
def run_stripe_standin(
    port: int | None = None, host: str = "127.0.0.1", **options: Any
) -> Iterator[StripeStandIn]:
    """Start the stand-in subprocess, yield its ``StripeStandIn``, stop it on exit.

    ``options`` are ``StripeStandIn``'s keyword arguments (``webhook_delay``,
    ``startup_timeout``, ``verbose``, ``cwd``, ``env`` …).
    """
    standin = StripeStandIn(port, host, **options)
    with standin:
        yield standin
