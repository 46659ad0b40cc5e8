"""The stand-in's ``state_file``: what it made is still there after a restart (the demo's)."""

from __future__ import annotations

from pathlib import Path

import pytest

from django_stripe_bridge.testing import run_stripe_standin

pytestmark = pytest.mark.standin


def test_a_restarted_standin_with_a_state_file_knows_its_charges_and_refunds(
    tmp_path: Path,
) -> None:
    state = tmp_path / "standin.pickle"
    with run_stripe_standin(state_file=state) as standin:
        client = standin.client()
        charge = client.v1.charges.create({"amount": 1000, "currency": "usd", "source": "tok_visa"})
        client.v1.refunds.create({"charge": charge.id, "amount": 400})
    assert state.exists()

    with run_stripe_standin(state_file=state) as standin:
        client = standin.client()
        again = client.v1.charges.retrieve(charge.id)
        assert (again.amount, again.amount_refunded) == (1000, 400)
        # A refund of what is left works: the admin's Refund is no dead end after a restart.
        client.v1.refunds.create({"charge": charge.id})
        assert client.v1.charges.retrieve(charge.id).refunded is True
        second = client.v1.charges.create({"amount": 500, "currency": "usd", "source": "tok_visa"})

    with run_stripe_standin(state_file=state) as standin:
        client = standin.client()
        assert client.v1.charges.retrieve(charge.id).refunded is True
        assert client.v1.charges.retrieve(second.id).amount == 500


def test_without_a_state_file_a_restart_starts_empty() -> None:
    with run_stripe_standin() as standin:
        charge = standin.client().v1.charges.create(
            {"amount": 1000, "currency": "usd", "source": "tok_visa"}
        )
    with run_stripe_standin() as standin, pytest.raises(Exception, match="No such charge"):
        standin.client().v1.charges.retrieve(charge.id)
