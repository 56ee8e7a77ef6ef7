"""``deeploc serve``: the published site and ``POST /api/predict`` for your own photo, on Starlette under
uvicorn (HTTP/1.1: keep-alive, HEAD, ``Expect: 100-continue``).

Built to face hostile clients, with every read, queue and pool bounded:
- the body limit is enforced while the body is read, whatever the headers say; a missing length is a 411,
  a malformed one a 400 (from the protocol), a length or a body over the limit a 413 at once, a body
  that stalls a 408; chunked uploads are read like any other;
- decoding and prediction run off the event loop on ``threads`` threads with ``queue`` uploads waiting;
  beyond that the answer is 503 with Retry-After;
- only the allowed Host names are answered (DNS rebinding), an upload from another origin is refused,
  and every answer, the protocol's own errors included, carries the CSP, nosniff and referrer policy;
- ``/healthz`` for probes, one access-log line per request.

Several processes (``--workers``) share the port; each loads the model (see the README on running it
behind a reverse proxy).
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import dataclasses
import json
import logging
import math
import os
import socket
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from http import HTTPStatus
from urllib.parse import urlsplit

from starlette.applications import Starlette
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from deeploc.earth import geography
from deeploc.learn.predict import Predictor
from deeploc.storage import commit, runs
from deeploc.storage.lake import Lake
from deeploc.web import site_policy, upload
from deeploc.web.http_guard import ConnectionLimits, GuardedH11Protocol
from deeploc.web.site_files import SiteFiles

log = logging.getLogger(__name__)
access = logging.getLogger("deeploc.web.serve.access")
LOOPBACK_NAMES = ("localhost", "127.0.0.1", "[::1]")
FORM_OVERHEAD = 64 << 10  # multipart boundaries and part headers around the photo
SETTINGS_ENV = "DEEPLOC_SERVE_SETTINGS"  # how ``--workers`` hands the settings to each worker process
# The site's files are served from disk while the process lives: from an S3 lake, its copy goes at exit.
_SERVED = contextlib.ExitStack()
atexit.register(_SERVED.close)


@dataclass(frozen=True)
class Limits:
    max_upload_mb: int = 20
    max_pixels: int = 40_000_000
    threads: int = 2            # photos decoded and predicted at once (memory: ~4 bytes a pixel each)
    queue: int = 8              # uploads waiting for a thread; the next one gets 503
    read_timeout_s: float = 15.0     # longest silence while a body is read
    upload_deadline_s: float = 120.0  # the whole body
    header_timeout_s: float = 10.0
    keep_alive_s: float = 5.0
    max_connections: int = 512
    backlog: int = 1024

    @property
    def max_upload_bytes(self) -> int:
        return self.max_upload_mb << 20


@dataclass(frozen=True)
class Settings:
    lake: str
    run: str | None = None
    host: str = "127.0.0.1"
    port: int = 8000
    allowed_hosts: tuple[str, ...] = ()
    limits: Limits = Limits()

    def hosts(self) -> set[str]:
        """The Host names answered: the configured ones, else loopback's when bound to loopback."""
        if self.allowed_hosts:
            return {h.lower() for h in self.allowed_hosts}
        if self.host in ("127.0.0.1", "localhost", "::1"):
            return set(LOOPBACK_NAMES)
        raise SystemExit(f"deeploc serve: bound to {self.host}, so name the host names clients will use "
                         "(--allowed-host maps.example.org; repeat it for several)")

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self))

    @classmethod
    def from_json(cls, text: str) -> Settings:
        d = json.loads(text)
        return cls(**{**d, "allowed_hosts": tuple(d["allowed_hosts"]), "limits": Limits(**d["limits"])})


class Uploads:
    """The bounded pool predictions run on, and the admission count in front of it (event-loop only)."""

    def __init__(self, limits: Limits):
        self.pool = ThreadPoolExecutor(limits.threads, thread_name_prefix="predict")
        self.threads, self.slots, self.active = limits.threads, limits.threads + limits.queue, 0
        self.recent = deque([1.0], maxlen=20)  # seconds per prediction, for Retry-After

    def retry_after(self) -> int:
        return max(1, math.ceil(sum(self.recent) / len(self.recent) * self.slots / self.threads))


def host_name(header: str) -> str:
    """The name part of a Host header: ``[::1]:8000`` -> ``[::1]``, ``Example.org:80`` -> ``example.org``."""
    h = header.strip().lower()
    if h.startswith("["):
        return h[:h.find("]") + 1]
    return h.rsplit(":", 1)[0]


def refuse(exc: upload.Refused) -> JSONResponse:
    """A refusal closes the connection: the rest of a body we stopped reading must not be taken for the
    next request."""
    return JSONResponse({"error": exc.message}, exc.status, headers={"Connection": "close", **exc.headers})


async def body_chunks(request: Request, limits: Limits):
    """The body as it arrives, refused at the first byte over the limit or after a silence too long."""
    loop = asyncio.get_running_loop()
    deadline, total = loop.time() + limits.upload_deadline_s, 0
    stream = request.stream().__aiter__()
    while True:
        wait = min(limits.read_timeout_s, deadline - loop.time())
        try:
            chunk = await asyncio.wait_for(stream.__anext__(), max(wait, 0))
        except StopAsyncIteration:
            return
        except asyncio.TimeoutError:
            raise upload.Refused(HTTPStatus.REQUEST_TIMEOUT, "the upload stalled; send the whole photo at once") from None
        total += len(chunk)
        if total > limits.max_upload_bytes + FORM_OVERHEAD:
            raise upload.too_large(limits.max_upload_bytes)
        yield chunk


async def read_photo(request: Request, limits: Limits) -> bytes:
    length = request.headers.get("content-length")
    if length is None and "chunked" not in request.headers.get("transfer-encoding", "").lower():
        raise upload.Refused(HTTPStatus.LENGTH_REQUIRED, "send the photo with a Content-Length (or chunked)")
    if length is not None and int(length) > limits.max_upload_bytes + FORM_OVERHEAD:  # h11 checked it is a number
        raise upload.too_large(limits.max_upload_bytes)  # answered before a byte of the body is read
    field = upload.PhotoField(request.headers.get("content-type", ""), limits.max_upload_bytes)
    async for chunk in body_chunks(request, limits):
        field.feed(chunk)
    return field.photo()


async def drain(request: Request, limits: Limits) -> None:
    """Read and drop a body we will not use, so the client reads our answer instead of a reset; not when
    it waits for ``100 Continue`` (it has sent nothing)."""
    if "100-continue" in request.headers.get("expect", "").lower():
        return
    try:
        async for _ in body_chunks(request, limits):
            pass
    except (upload.Refused, ClientDisconnect):
        pass


def same_origin(request: Request) -> bool:
    """A browser names the page that sends a form: it must be this server. Clients without an Origin
    (curl, scripts) are not browsers and carry no one's cookies."""
    origin = request.headers.get("origin")
    if request.headers.get("sec-fetch-site") in ("cross-site", "same-site"):
        return False
    return origin is None or urlsplit(origin).netloc.lower() == request.headers.get("host", "").lower()


def build_app(site: str, predictor: Predictor, run: str, limits: Limits, hosts: set[str], tiles: str | None):
    files, uploads = SiteFiles(site), Uploads(limits)

    async def predict(request: Request) -> Response:
        if request.method != "POST":
            return JSONResponse({"error": "POST a photo here (multipart field 'photo')"}, 405, headers={"Allow": "POST"})
        if not same_origin(request):
            return refuse(upload.Refused(HTTPStatus.FORBIDDEN, "uploads are taken from this server's own page only"))
        if uploads.active >= uploads.slots:
            await drain(request, limits)
            return refuse(upload.Refused(HTTPStatus.SERVICE_UNAVAILABLE, "the server is busy; try again shortly",
                                         {"Retry-After": str(uploads.retry_after())}))
        uploads.active += 1
        try:
            data = await read_photo(request, limits)
            started = time.monotonic()
            out = await asyncio.get_running_loop().run_in_executor(
                uploads.pool, upload.answer, predictor, data, limits.max_pixels)
            uploads.recent.append(time.monotonic() - started)
            return JSONResponse(out)
        except upload.Refused as exc:
            return refuse(exc)
        except ClientDisconnect:
            return Response(status_code=400)  # no one reads it
        except Exception:  # noqa: BLE001 - an answer, never a stack trace
            log.exception("predict failed")
            return JSONResponse({"error": "the prediction failed; see the server's log"}, 500)
        finally:
            uploads.active -= 1

    async def healthz(request: Request) -> Response:
        return JSONResponse({"ok": True, "run": run, "pid": os.getpid(), "uploads": uploads.active,
                             "slots": uploads.slots})

    async def site_file(request: Request) -> Response:
        return files.response(request)

    app = Starlette(routes=[Route("/api/predict", predict, methods=["GET", "POST"]), Route("/healthz", healthz),
                            Route("/{path:path}", site_file, methods=["GET", "HEAD"])])
    return guarded(app, hosts, site_policy.security_headers(tiles))


def guarded(app, hosts: set[str], headers: list[tuple[str, str]]):
    """Around the app (plain ASGI: nothing is buffered): the Host allow-list, the security headers on
    every answer, a 500 that says nothing of the code for anything unexpected, one access-log line."""
    raw_headers = [(k.lower().encode(), v.encode()) for k, v in headers]

    async def asgi(scope, receive, send):
        if scope["type"] != "http":
            return await app(scope, receive, send)
        started, seen = time.monotonic(), {"status": 0, "bytes": 0}

        async def send_guarded(message):
            if message["type"] == "http.response.start":
                seen["status"] = message["status"]
                message = {**message, "headers": [*message.get("headers", []), *raw_headers]}
            elif message["type"] == "http.response.body":
                seen["bytes"] += len(message.get("body", b""))
            await send(message)

        host = dict(scope["headers"]).get(b"host", b"").decode("latin-1")
        try:
            if host_name(host) in hosts:
                await app(scope, receive, send_guarded)
            else:
                await JSONResponse({"error": f"this server does not answer for the host {host!r}"}, 400)(
                    scope, receive, send_guarded)
        except Exception:  # noqa: BLE001
            log.exception("%s %s failed", scope["method"], scope["path"])
            if not seen["status"]:
                await JSONResponse({"error": "internal error; see the server's log"}, 500)(scope, receive, send_guarded)
        finally:
            client = scope.get("client") or ("-", 0)
            access.info('%s:%s "%s %s" %d %dB %.0fms', client[0], client[1], scope["method"], scope["path"],
                        seen["status"], seen["bytes"], 1000 * (time.monotonic() - started))
    return asgi


def load(settings: Settings):
    """The app for these settings: the published site, the model run that predicts uploads, the
    protocol's limits and headers for this process."""
    lake = Lake(settings.lake)
    site = _SERVED.enter_context(lake.local_copy(commit.require(lake, "site", "deeploc publish")))
    with open(os.path.join(site, "site.json")) as f:
        published = json.load(f)
    tiles = site_policy.tile_url(published["tiles"])
    run = settings.run or published["run"] or runs.resolve(lake, None)
    with lake.local_copy(commit.require(lake, f"models/{run}", "train")) as model_dir:
        predictor = Predictor.load(model_dir)
    geography.countries()  # loaded now, not on the first upload
    GuardedH11Protocol.limits = ConnectionLimits(settings.limits.max_connections, settings.limits.header_timeout_s)
    GuardedH11Protocol.security_headers = site_policy.security_headers(tiles)
    return build_app(site, predictor, run, settings.limits, settings.hosts(), tiles)


def app_from_environment():
    """The app factory each ``--workers`` process calls (``uvicorn --factory`` style)."""
    return load(Settings.from_json(os.environ[SETTINGS_ENV]))


def uvicorn_options(settings: Settings) -> dict:
    lim = settings.limits
    return {"http": GuardedH11Protocol, "ws": "none", "lifespan": "off", "log_config": None, "access_log": False,
            "server_header": False, "timeout_keep_alive": lim.keep_alive_s, "backlog": lim.backlog,
            "h11_max_incomplete_event_size": 16 << 10}


def make_server(settings: Settings):
    """A uvicorn server for one process and its listening socket (port 0: any free port)."""
    import uvicorn

    app = load(settings)
    sock = socket.create_server((settings.host, settings.port), backlog=settings.limits.backlog,
                                family=socket.AF_INET6 if ":" in settings.host else socket.AF_INET)
    return uvicorn.Server(uvicorn.Config(app, **uvicorn_options(settings))), sock


def serve(settings: Settings, workers: int = 1) -> None:
    import uvicorn

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    settings.hosts()  # an exposed address without --allowed-host stops here, before the model loads
    if workers > 1:
        os.environ[SETTINGS_ENV] = settings.to_json()
        print(f"deeploc: the web map on http://{settings.host}:{settings.port}/ with {workers} workers "
              "(Ctrl-C stops it)", flush=True)
        uvicorn.run("deeploc.web.serve:app_from_environment", factory=True, workers=workers, host=settings.host,
                    port=settings.port, **uvicorn_options(settings))
        return
    server, sock = make_server(settings)
    host, port = sock.getsockname()[:2]
    print(f"deeploc: the web map on http://{host}:{port}/ (Ctrl-C stops it)", flush=True)
    server.run(sockets=[sock])
