"""A moto S3 server on a free loopback port, for tests and benchmarks (moto is in the pinned lock).

It runs in a thread of the calling process, so that process can also reach moto's in-memory state
(drive it, inject objects, count requests); Spark workers reach it over HTTP like any S3 endpoint.
"""

from __future__ import annotations

import socket
import urllib.request


def start():
    """Start a server; return (server, endpoint URL). Call ``server.stop()`` when done."""
    from moto.server import ThreadedMotoServer

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    url = f"http://127.0.0.1:{port}"
    # moto keeps its state per process, not per server: start every server empty.
    urllib.request.urlopen(urllib.request.Request(f"{url}/moto-api/reset", method="POST"), timeout=30).read()
    return server, url
