"""Who may subscribe to what: the ``SUBSCRIBE_POLICY`` setting.

A policy is a callable ``(user, selector, pinned_ids) -> bool``: ``user`` is the
connection's user (``AnonymousUser`` without a session), ``selector`` the compiled
``Selector``, ``pinned_ids`` its ``pinned_ids``. The
selector is always parsed before a policy sees it. Built-in policies are named by a word;
anything else is the dotted path of your own callable (sync or ``async def``).

Connected accounts (``SUBSCRIBE_ACCOUNTS``): the built-in ``pinned`` and ``staff`` policies
also let a user follow every payment of the connected accounts the setting's callable gives
for them (a seller's own), with a broad selector pinned to those accounts
(``account = 'acct_1' AND status = 'succeeded'``) — and no account beyond them.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Callable
from typing import Any

from asgiref.sync import async_to_sync
from channels.db import database_sync_to_async
from django.utils.module_loading import import_string

from ..conf import SETTING_NAME, bridge_settings
from ..exceptions import ConfigurationError

logger = logging.getLogger(__name__)

#: A ``pinned`` selector may name at most this many transaction ids without staff rights.
MAX_PINNED_IDS = 100

Policy = Callable[[Any, Any, "frozenset[str] | None"], Any]


def is_staff(user: Any) -> bool:
    """Whether ``user`` is an active staff member."""
    return bool(getattr(user, "is_active", False) and getattr(user, "is_staff", False))


def accounts_of(user: Any) -> frozenset[str]:
    """The connected accounts ``user`` may follow (``SUBSCRIBE_ACCOUNTS``); none by default.

    The callable may read the database: call this from a thread, not the event loop.
    """
    if not getattr(user, "is_authenticated", False) or not getattr(user, "is_active", False):
        return frozenset()
    value = bridge_settings.SUBSCRIBE_ACCOUNTS
    if value is None:
        return frozenset()
    accounts_for = import_string(value) if isinstance(value, str) else value
    return frozenset(str(account) for account in accounts_for(user) or ())


def within_own_accounts(user: Any, selector: Any) -> bool:
    """Whether ``selector`` pins ``account`` to accounts that are all ``user``'s own."""
    pinned: frozenset[str] | None = getattr(selector, "pinned_accounts", None)
    return bool(pinned) and pinned is not None and pinned <= accounts_of(user)


def open_policy(user: Any, selector: Any, pinned_ids: frozenset[str] | None) -> bool:
    """Anyone may subscribe with any selector (the Backendless behaviour)."""
    return True


def staff_policy(user: Any, selector: Any, pinned_ids: frozenset[str] | None) -> bool:
    """Only active staff users may subscribe, and a seller to its own accounts' payments."""
    return is_staff(user) or within_own_accounts(user, selector)


def pinned_policy(user: Any, selector: Any, pinned_ids: frozenset[str] | None) -> bool:
    """Anyone may follow up to 100 named transactions; broader selectors need staff, or
    must be pinned to the user's own connected accounts (``SUBSCRIBE_ACCOUNTS``)."""
    if pinned_ids is not None and len(pinned_ids) <= MAX_PINNED_IDS:
        return True
    return is_staff(user) or within_own_accounts(user, selector)


BUILTIN_POLICIES: dict[str, Policy] = {
    "pinned": pinned_policy,
    "open": open_policy,
    "staff": staff_policy,
}


def get_policy() -> Policy:
    """The callable named by ``SUBSCRIBE_POLICY``."""
    value = bridge_settings.SUBSCRIBE_POLICY
    if callable(value):
        return value
    if not isinstance(value, str):
        raise ConfigurationError(
            f"{SETTING_NAME}['SUBSCRIBE_POLICY'] must be 'pinned', 'open', 'staff' or the "
            f"dotted path of a callable, not {value!r}."
        )
    if value in BUILTIN_POLICIES:
        return BUILTIN_POLICIES[value]
    try:
        policy = import_string(value)
    except ImportError as exc:
        raise ConfigurationError(
            f"{SETTING_NAME}['SUBSCRIBE_POLICY'] = {value!r} is neither 'pinned', 'open' nor "
            f"'staff', and could not be imported as a callable: {exc}"
        ) from exc
    if not callable(policy):
        raise ConfigurationError(
            f"{SETTING_NAME}['SUBSCRIBE_POLICY'] = {value!r} is not callable; it must take "
            "(user, selector, pinned_ids) and return a bool."
        )
    return policy


async def may_subscribe(user: Any, selector: Any) -> bool:
    """Apply the policy; a policy that raises, or cannot be loaded, refuses (and is logged)."""
    try:
        policy = get_policy()
    except ConfigurationError:
        # Refuse rather than kill the connection: every other frame still works.
        logger.exception("SUBSCRIBE_POLICY cannot be used; the subscription is refused.")
        return False
    pinned_ids = selector.pinned_ids
    try:
        if policy in BUILTIN_POLICIES.values():
            if bridge_settings.SUBSCRIBE_ACCOUNTS is None or not selector.pinned_accounts:
                return bool(policy(user, selector, pinned_ids))
            # SUBSCRIBE_ACCOUNTS's callable may read the database.
            return bool(await database_sync_to_async(policy)(user, selector, pinned_ids))
        if inspect.iscoroutinefunction(policy):
            return bool(await policy(user, selector, pinned_ids))
        # A custom policy may well look at the database (who owns this transaction?).
        return bool(await database_sync_to_async(policy)(user, selector, pinned_ids))
    except Exception:
        logger.exception("SUBSCRIBE_POLICY %r raised; the subscription is refused.", policy)
        return False


def may_read_transaction(user: Any, transaction_id: str, account: str) -> bool:
    """Whether ``user`` may read a stored transaction (``GET transactions/<id>``): what
    ``SUBSCRIBE_POLICY`` answers for a subscription to its id pinned to its account
    (``id = '<id>' AND (account = '<account>')``). Under ``pinned`` knowing the id is
    enough; under ``staff`` it takes staff, or a seller of the transaction's account.
    Call it from a thread, not the event loop."""
    from ..selectors import compile_selector, pin_id

    narrowed = None
    if account:
        narrowed = compile_selector("account = '{}'".format(account.replace("'", "''")))
    return bool(async_to_sync(may_subscribe)(user, pin_id(transaction_id, narrowed)))
