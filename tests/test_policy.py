"""``SUBSCRIBE_POLICY`` (SPEC §5): pinned, open, staff, and a callable, with session users."""

from __future__ import annotations

import pytest
from channels.db import database_sync_to_async
from django.contrib.auth import get_user_model
from django.contrib.auth.models import AnonymousUser
from django.test import override_settings

from django_stripe_bridge import policy
from django_stripe_bridge.exceptions import ConfigurationError
from django_stripe_bridge.selectors import compile_selector
from tests.realtime_fixtures import *  # noqa: F403
from tests.realtime_fixtures import open_client, session_cookie

pytestmark = pytest.mark.django_db(transaction=True)

PINNED_100 = "id IN ({})".format(", ".join(f"'ch_{i}'" for i in range(100)))
PINNED_101 = "id IN ({})".format(", ".join(f"'ch_{i}'" for i in range(101)))


@database_sync_to_async
def login(username: str, *, staff: bool = False) -> str:
    user = get_user_model().objects.create_user(username, password="x", is_staff=staff)
    return session_cookie(user)


async def outcome(selector: str, cookie: str | None = None) -> str:
    """``subscribed`` or the error code a subscription with ``selector`` gets."""
    client = await open_client(cookie=cookie)
    answer = await client.subscribe(selector, subscription="s1", replay="none")
    await client.close()
    return answer["type"] if answer["type"] == "subscribed" else answer["code"]


# -- pinned (the default) -----------------------------------------------------------------


@pytest.mark.parametrize(
    "selector",
    [
        "id = 'ch_1'",
        "id IN ('ch_1', 'ch_2')",
        PINNED_100,
        "id = 'ch_1' AND amount > 500",
        "id = 'ch_1' OR id = 'pi_2'",
        "(id = 'ch_1' AND type = 'charge.refunded') OR id IN ('pi_2')",
        "id = 'a' AND id = 'b'",
    ],
)
async def test_pinned_lets_anyone_follow_named_transactions(selector):
    assert await outcome(selector) == "subscribed"


@pytest.mark.parametrize(
    "selector",
    [
        "",
        "amount > 500",
        "id LIKE 'ch_%'",
        "id <> 'ch_1'",
        "NOT id = 'ch_1'",
        "id = 'ch_1' OR amount > 5",
        PINNED_101,
    ],
)
async def test_pinned_refuses_broader_selectors_to_anonymous_users(selector):
    assert await outcome(selector) == "forbidden"


async def test_pinned_refuses_broader_selectors_to_users_without_staff():
    cookie = await login("alice")
    assert await outcome("amount > 500", cookie) == "forbidden"


async def test_pinned_allows_broader_selectors_to_staff():
    cookie = await login("boss", staff=True)
    assert await outcome("amount > 500", cookie) == "subscribed"
    assert await outcome(PINNED_101, cookie) == "subscribed"
    assert await outcome("", cookie) == "subscribed"


async def test_malformed_broad_selector_is_invalid_before_forbidden():
    assert await outcome("amount > ") == "invalid_selector"
    assert await outcome("id IN ()") == "invalid_selector"


async def test_forbidden_message_says_what_to_do():
    client = await open_client()
    answer = await client.subscribe("amount > 5", subscription="s1")
    assert answer["code"] == "forbidden"
    assert "staff" in answer["message"] and "id" in answer["message"]
    assert await client.request({"action": "ping"}) == {"type": "pong"}
    await client.close()


# -- open, staff --------------------------------------------------------------------------


@override_settings(STRIPE_BRIDGE={"SUBSCRIBE_POLICY": "open"})
async def test_open_allows_any_selector():
    assert await outcome("") == "subscribed"
    assert await outcome("amount > 500") == "subscribed"
    assert await outcome("amount >") == "invalid_selector"


@override_settings(STRIPE_BRIDGE={"SUBSCRIBE_POLICY": "staff"})
async def test_staff_allows_only_staff():
    assert await outcome("id = 'ch_1'") == "forbidden"
    assert await outcome("id = 'ch_1'", await login("alice")) == "forbidden"
    boss = await login("boss", staff=True)
    assert await outcome("id = 'ch_1'", boss) == "subscribed"
    assert await outcome("", boss) == "subscribed"


# -- a callable ---------------------------------------------------------------------------

calls: list[tuple] = []


def only_usernames_starting_with_a(user, selector, pinned_ids) -> bool:
    calls.append((user, selector, pinned_ids))
    return user.is_authenticated and user.username.startswith("a")


async def async_policy(user, selector, pinned_ids) -> bool:
    return pinned_ids == frozenset({"ch_ok"})


def exploding_policy(user, selector, pinned_ids) -> bool:
    raise RuntimeError("boom")


def policy_using_the_database(user, selector, pinned_ids) -> bool:
    # Runs in a worker thread, so it may use the ORM.
    return get_user_model().objects.filter(pk=user.pk, username="alice").exists()


@override_settings(
    STRIPE_BRIDGE={"SUBSCRIBE_POLICY": "tests.test_policy.only_usernames_starting_with_a"}
)
async def test_callable_policy_receives_user_selector_and_pinned_ids():
    calls.clear()
    assert await outcome("id IN ('ch_1', 'ch_2')") == "forbidden"
    assert await outcome("amount > 5", await login("alice")) == "subscribed"
    assert await outcome("amount > 5", await login("bob")) == "forbidden"
    anonymous, selector, pinned = calls[0]
    assert isinstance(anonymous, AnonymousUser) or not anonymous.is_authenticated
    assert selector == compile_selector("id IN ('ch_1', 'ch_2')")
    assert pinned == frozenset({"ch_1", "ch_2"})
    assert calls[1][0].username == "alice" and calls[1][2] is None


@override_settings(STRIPE_BRIDGE={"SUBSCRIBE_POLICY": "tests.test_policy.async_policy"})
async def test_async_callable_policy():
    assert await outcome("id = 'ch_ok'") == "subscribed"
    assert await outcome("id = 'ch_no'") == "forbidden"


@override_settings(STRIPE_BRIDGE={"SUBSCRIBE_POLICY": "tests.test_policy.exploding_policy"})
async def test_a_policy_that_raises_refuses():
    assert await outcome("id = 'ch_1'") == "forbidden"


@override_settings(
    STRIPE_BRIDGE={"SUBSCRIBE_POLICY": "tests.test_policy.policy_using_the_database"}
)
async def test_a_sync_policy_may_use_the_orm():
    assert await outcome("amount > 1", await login("alice")) == "subscribed"
    assert await outcome("amount > 1", await login("bob")) == "forbidden"


# -- the policy module --------------------------------------------------------------------


def test_builtin_policies_as_functions():
    staff = get_user_model()(username="s", is_staff=True, is_active=True)
    inactive_staff = get_user_model()(username="i", is_staff=True, is_active=False)
    anon = AnonymousUser()
    broad = compile_selector("amount > 1")
    pinned = compile_selector("id = 'x'")
    assert policy.pinned_policy(anon, pinned, pinned.pinned_ids)
    assert not policy.pinned_policy(anon, broad, broad.pinned_ids)
    assert policy.pinned_policy(staff, broad, broad.pinned_ids)
    assert not policy.pinned_policy(inactive_staff, broad, broad.pinned_ids)
    assert policy.open_policy(anon, broad, None)
    assert not policy.staff_policy(anon, pinned, pinned.pinned_ids)
    assert policy.staff_policy(staff, pinned, pinned.pinned_ids)


@pytest.mark.parametrize(
    ("value", "match"),
    [
        ("nobody.knows.this_policy", "could not be imported"),
        ("tests.test_policy.PINNED_100", "not callable"),
        (42, "must be 'pinned'"),
    ],
)
def test_bad_policy_settings_say_which_setting(value, match):
    with (
        override_settings(STRIPE_BRIDGE={"SUBSCRIBE_POLICY": value}),
        pytest.raises(ConfigurationError, match=match) as info,
    ):
        policy.get_policy()
    assert "SUBSCRIBE_POLICY" in str(info.value)


def test_policy_may_be_given_as_a_callable():
    with override_settings(STRIPE_BRIDGE={"SUBSCRIBE_POLICY": async_policy}):
        assert policy.get_policy() is async_policy
