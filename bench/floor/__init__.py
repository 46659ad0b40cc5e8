"""The benchmarks' floors: the least a site could do for the bridge's two jobs.

A naive webhook view (read the body, check one HMAC, insert one row, ``group_send`` once)
and a bare websocket consumer (join one group per id, send the id's latest row). The bench
server loads them beside the bridge (``bench.floor.settings``, ``bench.floor.asgi``), so
both are served by the same process, settings, database and channel layer.
"""
