"""uvicorn's HTTP/1.1 protocol with what it leaves to the application: a cap on open connections (a
503 with Retry-After beyond it), a deadline for each request's headers (a client that trickles them is
closed with a 408), and the security headers on the few answers the protocol writes itself (a 400 for
a malformed request: a negative or non-numeric Content-Length, an oversized header)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol


@dataclass(frozen=True)
class ConnectionLimits:
    max_connections: int = 512
    header_timeout_s: float = 10.0


class GuardedH11Protocol(H11Protocol):
    # Set once per process by ``serve.make_server`` / ``serve.app_from_environment`` before the server
    # listens: uvicorn builds protocols from a class, and each process serves exactly one app.
    limits = ConnectionLimits()
    security_headers: list[tuple[str, str]] = []

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._headers_due: asyncio.TimerHandle | None = None
        if len(self.connections) > self.limits.max_connections:
            self._raw_answer(503, "Service Unavailable", b"too many connections; try again shortly", {"Retry-After": "2"})
            return
        self._expect_headers()

    def handle_events(self) -> None:
        super().handle_events()
        if self.conn.their_state is not h11.IDLE and self._headers_due is not None:
            self._headers_due.cancel()  # a request's headers are complete
            self._headers_due = None

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self.transport.is_closing():
            self._expect_headers()  # the next request on this connection gets the same deadline

    def connection_lost(self, exc: Exception | None) -> None:
        if self._headers_due is not None:
            self._headers_due.cancel()
        super().connection_lost(exc)

    def send_400_response(self, msg: str) -> None:
        self._raw_answer(400, "Bad Request", msg.encode("ascii", "replace"))

    def _expect_headers(self) -> None:
        if self._headers_due is not None:
            self._headers_due.cancel()
        self._headers_due = self.loop.call_later(self.limits.header_timeout_s, self._headers_late)

    def _headers_late(self) -> None:
        self._headers_due = None
        if self.conn.their_state is h11.IDLE and not self.transport.is_closing() and (
                self.cycle is None or self.cycle.response_complete):
            self._raw_answer(408, "Request Timeout", b"the request's headers did not arrive in time")

    def _raw_answer(self, status: int, reason: str, body: bytes, extra: dict | None = None) -> None:
        """Write a whole answer and close: used where h11 has no request to answer (or has given up on it)."""
        head = [f"HTTP/1.1 {status} {reason}", "Content-Type: text/plain; charset=utf-8",
                f"Content-Length: {len(body)}", "Connection: close",
                *(f"{k}: {v}" for k, v in [*self.security_headers, *(extra or {}).items()])]
        self.transport.write(("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + body)
        self.transport.close()
