"""Channel-layer settings that keep idle websockets open on Redis, and a check for unsafe ones.

channels-redis's ``RedisChannelLayer`` waits for messages with ``BZPOPMIN`` blocking for
``brpop_timeout`` (5 s) on the server. redis-py gives every reply ``socket_timeout`` to
arrive; redis-py 8 sets it to 5 s by default (earlier versions: no timeout). With both at
5 s the client gives up on an idle blocking read just as Redis answers it, the layer's
``receive()`` raises, and the websocket is closed. ``redis_channel_layer()`` builds a layer
setting whose hosts carry an explicit ``socket_timeout`` longer than the blocking read, so
the outcome no longer depends on the redis-py version.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from typing import Any
from urllib.parse import parse_qs, urlparse

CORE_BACKEND = "channels_redis.core.RedisChannelLayer"
PUBSUB_BACKEND = "channels_redis.pubsub.RedisPubSubChannelLayer"

#: Seconds channels-redis's ``RedisChannelLayer`` blocks in ``BZPOPMIN`` (its ``brpop_timeout``).
BLOCKING_RECEIVE = 5.0
#: The ``socket_timeout`` set on each host: three blocking reads, so a slow reply is not
#: taken for a dead server, yet a half-open connection is noticed within seconds.
SOCKET_TIMEOUT = 15.0
#: Seconds allowed to open a connection to Redis.
CONNECT_TIMEOUT = 5.0


def redis_channel_layer(
    *hosts: str | Mapping[str, Any] | tuple[str, int],
    pubsub: bool = False,
    socket_timeout: float = SOCKET_TIMEOUT,
    **config: Any,
) -> dict[str, Any]:
    """A ``CHANNEL_LAYERS`` entry for channels-redis with safe timeouts on every host.

    ``hosts`` are Redis URLs, ``(host, port)`` pairs or channels-redis host dicts (several
    hosts shard the groups). ``config`` goes to the layer as is (``prefix``, ``capacity``…).
    ``pubsub=True`` selects ``RedisPubSubChannelLayer``.
    """
    if not hosts:
        raise ValueError("redis_channel_layer() needs at least one Redis host (a redis:// URL).")
    config["hosts"] = [_safe_host(host, socket_timeout) for host in hosts]
    return {"BACKEND": PUBSUB_BACKEND if pubsub else CORE_BACKEND, "CONFIG": config}


def _safe_host(host: str | Mapping[str, Any] | tuple[str, int], timeout: float) -> dict[str, Any]:
    if isinstance(host, str):
        entry: dict[str, Any] = {"address": host}
    elif isinstance(host, tuple | list):
        entry = {"host": host[0], "port": host[1]}
    else:
        entry = dict(host)
    entry.setdefault("socket_timeout", timeout)
    entry.setdefault("socket_connect_timeout", CONNECT_TIMEOUT)
    entry.setdefault("socket_keepalive", True)
    return entry


def redis_default_socket_timeout() -> float | None:
    """The ``socket_timeout`` redis-py uses when none is given (``None``: none at all)."""
    try:
        from redis.asyncio import Connection
    except ImportError:
        return None
    for cls in Connection.__mro__:
        init = vars(cls).get("__init__")
        if init is None:
            continue
        parameter = inspect.signature(init).parameters.get("socket_timeout")
        if parameter is not None:
            default = parameter.default
            return default if isinstance(default, int | float) else None
    return None


def _host_timeout(host: Any) -> float | None:
    """The socket timeout a channels-redis host entry ends up with."""
    if isinstance(host, Mapping):
        if "socket_timeout" in host:
            return host["socket_timeout"]
        address = host.get("address")
        if isinstance(address, str):
            return _host_timeout(address)
        return redis_default_socket_timeout()
    if isinstance(host, str):
        values = parse_qs(urlparse(host).query).get("socket_timeout")
        if values:
            try:
                return float(values[-1])
            except ValueError:
                return None
    return redis_default_socket_timeout()


def receiving_connections(layer: Any) -> list[Any]:
    """The redis-py connections ``layer`` subscribes on for the running event loop.

    For channels-redis's ``RedisPubSubChannelLayer``: one per shard in use. Redis pub/sub
    keeps nothing for a subscriber that is away, so what is published while one of these
    reconnects is lost; redis-py calls back whoever registered with its
    ``register_connect_callback()`` each time it connects again (after subscribing again).
    Empty for other layers: ``RedisChannelLayer`` keeps messages in Redis, and a receive
    that fails raises instead. channels-redis names none of this publicly, so it is looked
    up defensively (``tests/test_layers.py`` checks it against the installed version).
    """
    get_loop_layer = getattr(layer, "_get_layer", None)
    if not callable(get_loop_layer):
        return []
    found = []
    for shard in getattr(get_loop_layer(), "_shards", None) or ():
        connection = getattr(getattr(shard, "_pubsub", None), "connection", None)
        if callable(getattr(connection, "register_connect_callback", None)):
            found.append(connection)
    return found


def receive_timeout_problem(layer: Mapping[str, Any]) -> str | None:
    """Why ``layer`` (a ``CHANNEL_LAYERS`` entry) would time out its own blocking receive."""
    if layer.get("BACKEND") != CORE_BACKEND:
        # The pub/sub layer reads with its own short timeout: socket_timeout is not in play.
        return None
    config = layer.get("CONFIG") or {}
    hosts = config.get("hosts") or ["redis://localhost:6379"]
    for host in hosts:
        timeout = _host_timeout(host)
        if timeout is not None and timeout < 2 * BLOCKING_RECEIVE:
            return (
                f"a Redis host of the channel layer has socket_timeout {timeout:g} s, not more "
                f"than twice channels-redis's {BLOCKING_RECEIVE:g} s blocking receive: idle "
                "websockets are closed (1011) whenever a read times out first"
            )
    return None
