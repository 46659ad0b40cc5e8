"""Assemble the stand-in: localstripe with our patches, middlewares and extra routes."""

from __future__ import annotations

import contextlib
import html
import logging
import traceback
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from aiohttp import web

logger = logging.getLogger("django_stripe_bridge.standin")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

_installed: web.Application | None = None


def build_app(
    *, webhook_delay: float = 1.0, async_delay: float = 1.0, state_file: Path | None = None
) -> web.Application:
    """The aiohttp application (built once per process: the patches are global).

    ``state_file``: keep the objects in that file across restarts (``_state``); without it
    everything lives in memory only.
    """
    global _installed
    if _installed is not None:
        return _installed

    import localstripe
    from localstripe import resources

    from . import (
        _checkout,
        _connect,
        _disputes,
        _events,
        _idempotency,
        _later,
        _payments,
        _state,
        _thin,
    )

    # localstripe pickles the whole store to /tmp on every write: never that. With a
    # state file the store is saved after each changing request instead (below).
    resources.Store.dump_to_disk = lambda self: None  # type: ignore[method-assign]
    resources.Store.try_load_from_disk = lambda self: None  # type: ignore[method-assign]

    def clear_everything(self: Any) -> None:
        dict.clear(self)
        _idempotency.clear()
        _events.reset()
        _later.reset()
        _thin.reset()
        if state_file is not None:
            _state.save(self, state_file)

    resources.Store.clear = clear_everything  # type: ignore[method-assign]

    _events.install(webhook_delay)
    _payments.install()
    _connect.install()
    _later.install(async_delay)
    resources.extra_apis.extend(_disputes.routes())
    resources.extra_apis.extend(_checkout.routes())

    # localstripe.server builds its routes from resources.extra_apis when imported, so it
    # must come after the patches above.
    from localstripe import server
    from localstripe.errors import UserError

    from . import _context
    from ._errors import StripeAPIError

    @web.middleware
    async def context_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        account = request.headers.get("Stripe-Account") or request.headers.get("Stripe-Context")
        ctx = _context.begin(
            request_id=_context.new_request_id(),
            api_version=request.headers.get("Stripe-Version"),
            origin=f"{request.scheme}://{request.host}",
            account=account or None,
            scoped=request.path.startswith(("/v1/", "/v2/")),
        )
        response = await handler(request)
        response.headers["Request-Id"] = ctx.request_id or ""
        return response

    @web.middleware
    async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        try:
            return await handler(request)
        except UserError as exc:
            error = exc.body.setdefault("error", {})
            if exc.code == 402 and error.get("type") != "card_error":
                # localstripe's own declines (attaching a card): say it the Stripe way.
                spec = _context.current().attach_decline
                error["type"] = "card_error"
                if spec is not None:
                    error.update(code=spec.code, decline_code=spec.decline_code)
                    error["message"] = spec.message
                    if spec.param:
                        error["param"] = spec.param
                else:
                    error.setdefault("decline_code", "generic_decline")
            return exc.to_response()
        except web.HTTPException as exc:
            if request.method == "OPTIONS":  # CORS preflight (Stripe.js stand-in in a page)
                return web.Response()
            if exc.status in (404, 405):
                return StripeAPIError(
                    404,
                    f"Unrecognized request URL ({request.method}: {request.path}). Please see "
                    "https://stripe.com/docs or we can help at https://support.stripe.com/.",
                ).to_response()
            raise
        except Exception as exc:
            logger.error(
                "stand-in error on %s %s\n%s", request.method, request.path, traceback.format_exc()
            )
            return StripeAPIError(
                500, f"The Stripe stand-in failed: {type(exc).__name__}: {exc}", type="api_error"
            ).to_response()

    @web.middleware
    async def auth_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path.startswith("/_standin/"):
            return await handler(request)
        if request.method == "POST" and request.path.startswith("/_config/webhooks/"):
            return await configure_webhook(request)
        _connect.check_account_header(_context.current().account)
        return await server.auth_middleware(request, handler)

    @web.middleware
    async def state_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        try:
            return await handler(request)
        finally:
            if request.method != "GET":
                _state.save(resources.store, state_file)  # type: ignore[arg-type]

    app = server.app
    app.middlewares[:] = [
        *([state_middleware] if state_file is not None else []),
        context_middleware,
        _idempotency.idempotency_middleware,
        error_middleware,
        _thin.fault_middleware,
        auth_middleware,
    ]

    async def health(request: web.Request) -> web.Response:
        return web.json_response({"status": "ok", "localstripe": localstripe.__version__})

    async def list_webhooks(request: web.Request) -> web.Response:
        from localstripe import webhooks

        hooks = {
            name: {"url": hook.url, "events": hook.events}
            for name, hook in webhooks._webhooks.items()
        }
        return web.json_response({"webhooks": hooks, "deliveries": _events.state.deliveries})

    async def delete_webhook(request: web.Request) -> web.Response:
        _events.clear_webhooks(request.match_info.get("id"))
        return web.Response()

    app.router.add_get("/_config/health", health)
    app.router.add_get("/_config/webhooks", list_webhooks)
    app.router.add_delete("/_config/webhooks", delete_webhook)
    app.router.add_delete("/_config/webhooks/{id}", delete_webhook)
    _thin.add_routes(app)
    app.router.add_post("/_standin/settle", settle)
    app.router.add_post("/_standin/authorizations/{id}/expire", expire_authorization)
    app.router.add_get("/_standin/3ds/{id}", three_d_secure_page)
    app.router.add_post("/_standin/3ds/{id}", three_d_secure_answer)
    for method, path, handler in _checkout.page_routes():
        app.router.add_route(method, path, handler)

    if state_file is not None:
        _state.load(resources.store, state_file)
        app.on_cleanup.append(lambda app: _save_on_stop(resources.store, state_file))
    _installed = app
    return app


async def _save_on_stop(store: Any, state_file: Path) -> None:
    from . import _state

    _state.save(store, state_file)


# --- controls ---------------------------------------------------------------------------


async def configure_webhook(request: web.Request) -> web.Response:
    """``POST /_config/webhooks/{name}``: localstripe's, plus ``connect`` (the connected
    accounts' events instead of the platform's)."""
    from localstripe.server import get_post_data
    from localstripe.webhooks import _webhooks, register_webhook

    from ._errors import invalid

    name = request.path.rsplit("/", 1)[-1]
    data = await get_post_data(request) or {}
    url, secret, events = data.get("url"), data.get("secret"), data.get("events")
    if not url or not secret or not str(url).startswith("http"):
        raise invalid("A webhook needs an http(s) url and a secret.")
    if events is not None and not isinstance(events, list):
        raise invalid("events must be a list of event types.")
    register_webhook(name, url, secret, events)
    connect = data.get("connect") in (True, "true", "True", "1")
    _webhooks[name]._standin_connect = connect
    return web.Response()


# --- controls: make "later" happen now ----------------------------------------------------


async def settle(request: web.Request) -> web.Response:
    """Run every queued asynchronous change (refunds settling or failing, disputes)."""
    from . import _later

    return web.json_response({"ran": _later.settle()})


async def expire_authorization(request: web.Request) -> web.Response:
    """Let an uncaptured charge's (or PaymentIntent's) authorization expire now."""
    from . import _lifecycle

    charge = _lifecycle.expire(request.match_info["id"])
    return web.json_response(charge._export())


# --- the 3-D Secure page a ``redirect_to_url`` next action points to ------------------------

_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>3-D Secure test page</title>
<style>body{{font-family:sans-serif;max-width:32rem;margin:3rem auto}}
button{{font-size:1rem;margin-right:1rem;padding:.5rem 1rem}}</style></head>
<body><h1>3-D Secure test payment</h1>
<p>Offline Stripe stand-in: authenticate <strong>{amount}</strong> for PaymentIntent
<code>{id}</code>?</p>
<form method="post"><input type="hidden" name="client_secret" value="{secret}">
<button name="action" value="complete" type="submit">Complete authentication</button>
<button name="action" value="fail" type="submit">Fail authentication</button></form>
{result}</body></html>
"""


def _intent_or_404(request: web.Request, client_secret: str) -> Any:
    from localstripe.resources import PaymentIntent

    intent = PaymentIntent._api_retrieve(request.match_info["id"])
    if client_secret != intent.client_secret:
        raise web.HTTPNotFound(text="Unknown PaymentIntent or client secret.")
    return intent


async def three_d_secure_page(request: web.Request) -> web.Response:
    from ._currencies import format_amount

    secret = request.query.get("client_secret", "")
    intent = _intent_or_404(request, secret)
    body = _PAGE.format(
        amount=html.escape(format_amount(intent.amount, intent.currency)),
        id=html.escape(intent.id),
        secret=html.escape(secret),
        result="",
    )
    return web.Response(text=body, content_type="text/html")


async def three_d_secure_answer(request: web.Request) -> web.StreamResponse:
    from localstripe.errors import UserError
    from localstripe.resources import PaymentIntent

    form = await request.post()
    secret = str(form.get("client_secret", ""))
    intent = _intent_or_404(request, secret)
    from . import _connect, _context

    # The charge the authentication makes is the PaymentIntent's account's (a direct charge).
    _context.current().account = _connect.owner(intent)
    success = form.get("action") == "complete"
    with contextlib.suppress(UserError):  # a decline after authentication: recorded
        PaymentIntent._api_authenticate(intent.id, client_secret=secret, success=success)
    passed = intent.status in ("succeeded", "requires_capture", "processing")
    status = "succeeded" if passed else "failed"
    return_url = intent._standin_return_url
    if not return_url:
        return web.Response(
            text=f"<p>Authentication finished: {html.escape(status)}.</p>",
            content_type="text/html",
        )
    query = urlencode(
        {
            "payment_intent": intent.id,
            "payment_intent_client_secret": intent.client_secret,
            "redirect_status": status,
        }
    )
    separator = "&" if "?" in return_url else "?"
    return web.Response(status=303, headers={"Location": f"{return_url}{separator}{query}"})
