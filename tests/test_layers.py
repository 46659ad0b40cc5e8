"""Safe channels-redis settings (``layers.redis_channel_layer``) and check W006.

The failure they prevent: redis-py 8's default ``socket_timeout`` (5 s) is no longer than
channels-redis's blocking receive (``BZPOPMIN`` for 5 s), so an idle receive can raise.
"""

from __future__ import annotations

import asyncio

import pytest
from channels_redis.core import RedisChannelLayer
from django.test import override_settings

from django_stripe_bridge import layers
from django_stripe_bridge.checks import check_settings
from tests.realtime_fixtures import unique_prefix

GOOD = {"API_KEY": "sk_test_x", "WEBHOOK_SECRETS": ["whsec_x"]}


def w006(layer: dict) -> list[str]:
    with override_settings(STRIPE_BRIDGE=GOOD, CHANNEL_LAYERS={"default": layer}, DEBUG=False):
        return [m.msg for m in check_settings() if m.id == "stripe_bridge.W006"]


def test_helper_gives_every_host_a_timeout_longer_than_the_blocking_receive():
    layer = layers.redis_channel_layer(
        "redis://a:6379/1",
        ("b", 6380),
        {"address": "redis://c:6379/0", "socket_timeout": 30},
        prefix="site",
        capacity=200,
    )
    assert layer["BACKEND"] == "channels_redis.core.RedisChannelLayer"
    config = layer["CONFIG"]
    assert (config["prefix"], config["capacity"]) == ("site", 200)
    a, b, c = config["hosts"]
    assert a["address"] == "redis://a:6379/1" and (b["host"], b["port"]) == ("b", 6380)
    assert a["socket_timeout"] == b["socket_timeout"] == 15 and c["socket_timeout"] == 30
    assert all(h["socket_connect_timeout"] == 5 for h in (a, b, c))
    # What channels-redis itself blocks for is the figure the margin is based on.
    assert RedisChannelLayer.brpop_timeout == layers.BLOCKING_RECEIVE
    assert not w006(layer)
    pubsub = layers.redis_channel_layer("redis://a:6379/1", pubsub=True)
    assert pubsub["BACKEND"] == "channels_redis.pubsub.RedisPubSubChannelLayer"
    with pytest.raises(ValueError, match="at least one Redis host"):
        layers.redis_channel_layer()


@pytest.mark.parametrize(
    "hosts",
    [
        [{"address": "redis://localhost:6379/0", "socket_timeout": 5}],
        ["redis://localhost:6379/0?socket_timeout=5"],
        [{"host": "localhost", "port": 6379, "socket_timeout": 2.5}],
    ],
)
def test_w006_warns_when_a_host_times_out_the_blocking_receive(hosts):
    layer = {"BACKEND": "channels_redis.core.RedisChannelLayer", "CONFIG": {"hosts": hosts}}
    (message,) = w006(layer)
    assert "socket_timeout" in message and "1011" in message


def test_w006_follows_the_installed_redis_py_default():
    """A bare URL is unsafe exactly when the installed redis-py has a short default."""
    layer = {
        "BACKEND": "channels_redis.core.RedisChannelLayer",
        "CONFIG": {"hosts": ["redis://localhost:6379/0"]},
    }
    default = layers.redis_default_socket_timeout()
    assert bool(w006(layer)) == (default is not None and default < 10)
    import redis

    if int(redis.__version__.split(".")[0]) >= 8:
        assert default == 5 and w006(layer)
    # The pub/sub layer reads with its own timeout: never flagged.
    assert not w006({**layer, "BACKEND": layers.PUBSUB_BACKEND})


@pytest.mark.redis
async def test_a_short_socket_timeout_breaks_an_idle_receive_and_the_helper_does_not(redis_url):
    """The mechanism on real Redis: the read times out before ``BZPOPMIN`` answers."""
    prefix = unique_prefix()
    short = RedisChannelLayer(hosts=[{"address": redis_url, "socket_timeout": 1}], prefix=prefix)
    safe = RedisChannelLayer(**layers.redis_channel_layer(redis_url, prefix=prefix)["CONFIG"])
    try:
        bad_channel = await short.new_channel()
        with pytest.raises(Exception, match=r"(?i)timeout"):
            async with asyncio.timeout(4):
                await short.receive(bad_channel)
        good_channel = await safe.new_channel()
        receiving = asyncio.ensure_future(safe.receive(good_channel))
        await asyncio.sleep(1.5)
        assert not receiving.done()
        await safe.send(good_channel, {"type": "hello"})
        assert (await asyncio.wait_for(receiving, 5))["type"] == "hello"
    finally:
        await short.close_pools()
        await safe.close_pools()


@pytest.mark.redis
async def test_receiving_connections_are_the_pubsub_layers_subscribed_ones(redis_url):
    """``receiving_connections`` reaches into channels-redis: this pins it to the installed
    version. The pub/sub layer subscribes on one redis-py connection per shard in use, which
    takes connect callbacks; the core layer has none (a failing receive raises instead)."""
    from channels_redis.pubsub import RedisPubSubChannelLayer

    config = layers.redis_channel_layer(redis_url, pubsub=True, prefix=unique_prefix())["CONFIG"]
    pubsub = RedisPubSubChannelLayer(**config)
    try:
        assert layers.receiving_connections(pubsub) == []  # nothing subscribed yet
        await pubsub.new_channel()
        (connection,) = layers.receiving_connections(pubsub)
        assert connection.is_connected
        assert callable(connection.register_connect_callback)
    finally:
        await pubsub.flush()
    core = RedisChannelLayer(**layers.redis_channel_layer(redis_url)["CONFIG"])
    await core.new_channel()
    assert layers.receiving_connections(core) == []
    await core.close_pools()
