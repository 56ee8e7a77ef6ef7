"""A moto S3 server on a free loopback port, for tests and benchmarks (moto is in the pinned lock).

It runs in a thread of the calling process, so that process can also reach moto's in-memory state
(drive it, inject objects, count requests); Spark workers reach it over HTTP like any S3 endpoint.
"""

from __future__ import annotations

import socket


def start():
    """Start a server; return (server, endpoint URL). Call ``server.stop()`` when done."""
    from moto.server import ThreadedMotoServer

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    return server, f"http://127.0.0.1:{port}"
