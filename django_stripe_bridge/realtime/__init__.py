"""The real-time side of the bridge: one subscription engine, two transports.

``engine`` keeps a connection's subscriptions (selectors, policy, limits, replay with its
hold-back guard, recovery after layer state loss, groups); ``websocket`` and ``sse`` are
thin adapters that turn frames or HTTP requests into engine calls and engine output into
frames or ``text/event-stream`` events. Nothing here is imported by ``settings.py`` except
``layers`` (through ``django_stripe_bridge.layers``).
"""
