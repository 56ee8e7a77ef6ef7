"""A moto server (S3, Glue, ...) on a free loopback port, for tests and benchmarks (moto is in the lock).

It runs in a thread of the calling process, so that process can also reach moto's in-memory state
(drive it, inject objects, count requests); Spark workers and other processes reach it over HTTP like
any AWS endpoint.

moto 5.2 ignores the ``VersionId`` of Glue's UpdateTable, which real Glue checks: a stale one is
refused with ``ConcurrentModificationException``. That check is the optimistic lock Iceberg commits on
Glue rely on, so the server here makes it, as Glue documents it.
"""

from __future__ import annotations

import socket
import urllib.request


def _check_glue_versions() -> None:
    import threading

    from moto.glue import exceptions, responses

    if getattr(responses.GlueResponse.update_table, "checks_versions", False):
        return

    class ConcurrentModification(exceptions.GlueClientError):
        def __init__(self, message: str):
            super().__init__("ConcurrentModificationException", message)

    unchecked, lock = responses.GlueResponse.update_table, threading.Lock()

    def update_table(self):
        with lock:  # the check and the update as one step, across the server's request threads
            version = self.parameters.get("VersionId")
            if version is not None:
                table = self.glue_backend.get_table(self.parameters["DatabaseName"], self.parameters["TableInput"]["Name"])
                if str(table._current_version) != str(version):
                    raise ConcurrentModification(f"table version {version} is not the current one")
            return unchecked(self)

    update_table.checks_versions = True
    responses.GlueResponse.update_table = update_table


def start():
    """Start a server; return (server, endpoint URL). Call ``server.stop()`` when done."""
    from moto.server import ThreadedMotoServer

    _check_glue_versions()
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    url = f"http://127.0.0.1:{port}"
    reset(url)  # moto keeps its state per process, not per server: start every server empty
    return server, url


def reset(url: str) -> None:
    """Empty every service of the moto server at ``url`` (buckets, tables, clusters, instances, roles)."""
    urllib.request.urlopen(urllib.request.Request(f"{url}/moto-api/reset", method="POST"), timeout=30).read()
