"""Charging for a connected account: which one a request may use, and how (``CONNECT_POLICY``).

A create call's body may name a connected account (``account``). Whether this request may
charge for it, and as what kind of charge, is the server's decision: the callable named by
``CONNECT_POLICY`` gets the request and the account and returns a ``ConnectCharge``, or
``None`` to refuse. Without the setting no account is allowed. A refusal is a 403
(``AccountRefused``), and Stripe is not called.
"""

from __future__ import annotations

import dataclasses
import logging
from enum import StrEnum
from typing import Any

from django.utils.module_loading import import_string

from .conf import SETTING_NAME, bridge_settings
from .events import is_account_id
from .exceptions import AccountRefused, ConfigurationError

logger = logging.getLogger(__name__)


class ChargeMode(StrEnum):
    """Where the payment is made: on the connected account, or on the platform for it."""

    #: On the connected account (``Stripe-Account``); its own Connect events follow it.
    DIRECT = "direct"
    #: On the platform, the funds moved to the account (``transfer_data[destination]``).
    DESTINATION = "destination"


@dataclasses.dataclass(frozen=True)
class ConnectCharge:
    """How one payment is made for a connected account, as the server decided it."""

    account: str
    mode: ChargeMode = ChargeMode.DIRECT
    #: The platform's fee, in the smallest currency unit (``application_fee_amount``).
    application_fee_amount: int | None = None
    #: A destination charge settled in the account's name (``on_behalf_of``).
    on_behalf_of: bool = False

    def __post_init__(self) -> None:
        if not is_account_id(self.account):
            raise ValueError(f"ConnectCharge.account must be an acct_… id, not {self.account!r}")
        fee = self.application_fee_amount
        if fee is not None and (isinstance(fee, bool) or not isinstance(fee, int) or fee < 0):
            raise ValueError("ConnectCharge.application_fee_amount must be a whole number ≥ 0")
        if self.on_behalf_of and self.mode is not ChargeMode.DESTINATION:
            raise ValueError("on_behalf_of applies to destination charges only")

    @property
    def stripe_account(self) -> str | None:
        """The ``Stripe-Account`` the create call is made with (a direct charge's)."""
        return self.account if self.mode is ChargeMode.DIRECT else None

    def params(self) -> dict[str, Any]:
        """The create call's parameters that make it a payment for the account."""
        params: dict[str, Any] = {}
        if self.mode is ChargeMode.DESTINATION:
            params["transfer_data"] = {"destination": self.account}
            if self.on_behalf_of:
                params["on_behalf_of"] = self.account
        if self.application_fee_amount is not None:
            params["application_fee_amount"] = self.application_fee_amount
        return params


def get_connect_policy() -> Any:
    """The callable named by ``CONNECT_POLICY``, or ``None`` (no connected account allowed)."""
    value = bridge_settings.CONNECT_POLICY
    if value is None or callable(value):
        return value
    try:
        hook = import_string(value)
    except ImportError as exc:
        raise ConfigurationError(
            f"{SETTING_NAME}['CONNECT_POLICY'] = {value!r} could not be imported: {exc}"
        ) from exc
    if not callable(hook):
        raise ConfigurationError(f"{SETTING_NAME}['CONNECT_POLICY'] = {value!r} is not callable.")
    return hook


def decide(request: Any, account: str | None) -> ConnectCharge | None:
    """How a create call naming ``account`` is made, or ``None`` when it names none.

    Raises ``AccountRefused`` unless ``CONNECT_POLICY`` allows this request to charge for
    this account (the client's word alone never does).
    """
    if account is None:
        return None
    hook = get_connect_policy()
    if hook is None:
        raise AccountRefused(
            "Charging for a connected account is not enabled on this server.",
            error={"param": "account"},
        )
    decision = hook(request, account)
    if not decision:
        raise AccountRefused(
            f"You may not charge for the connected account {account!r}.",
            error={"param": "account"},
        )
    if not isinstance(decision, ConnectCharge) or decision.account != account:
        # A hook that answers for another account, or with something else, is a bug: refuse.
        logger.error(
            "CONNECT_POLICY returned %r for account %s; the request is refused.", decision, account
        )
        raise AccountRefused(
            f"You may not charge for the connected account {account!r}.",
            error={"param": "account"},
        )
    return decision
