"""The pure parts of a subscription's state."""

from django_stripe_bridge.realtime.subscription import RecentKeys, event_key, stored_order


def test_recent_keys_remember_the_last_ones_only():
    recent = RecentKeys(2)
    assert [recent.seen(k) for k in (1, 2, 1)] == [False, False, True]
    assert recent.seen(3) is False  # 1 is forgotten, the oldest
    assert recent.remembered() == frozenset({2, 3})
    assert recent.seen(1) is False
    assert recent.seen(None) is False and recent.seen(None) is False
    assert None not in recent.remembered()


def test_event_key_and_stored_order():
    assert event_key({"event_pk": 7, "event_id": "evt_1"}) == 7
    assert event_key({"event_pk": None, "event_id": "evt_1"}) == "evt_1"
    assert stored_order({"headers": {"created": 5}, "event_pk": 2}) == (5, 2)
    assert stored_order({}) == (0, 0)
