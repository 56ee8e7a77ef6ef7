"""``deeploc serve`` as hostile clients meet it: real sockets on loopback against the command started
from a plain shell, every loop bounded by a count or a socket timeout. Lengths are judged before the
body, stalls are cut by the server's timeouts, a crowd of uploads is answered (200, or 503 with
Retry-After), large and fake images are refused by their headers, foreign hosts and origins are
refused, and every answer, the protocol's own errors included, carries the security headers."""

import io
import os
import re
import socket
import struct
import subprocess
import sys
import threading
import time
import zlib
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from conftest import current
from PIL import Image

pytestmark = pytest.mark.slow
BOUNDARY = "deeplocboundary"


@pytest.fixture(scope="module")
def served(site, tmp_path_factory):
    """The CLI's server on a free port, with short timeouts and a 2 MB upload limit; a dotfile and a
    symlink out of the site folder planted first. Yields (port, pid)."""
    lake, _ = site
    folder = current(lake, "site")
    (folder / ".secret").write_text("not for clients")
    outside = tmp_path_factory.mktemp("outside") / "private.txt"
    outside.write_text("outside the site")
    if not (folder / "leak.txt").exists():
        os.symlink(outside, folder / "leak.txt")
    proc = subprocess.Popen(
        [sys.executable, "-m", "deeploc.cli", "serve", "--lake", str(lake), "--port", "0", "--read-timeout-s", "1",
         "--header-timeout-s", "2", "--max-upload-mb", "2", "--threads", "2", "--queue", "4"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    port = None
    for _ in range(400):  # the first lines until it listens (TensorFlow and the model load first)
        line = proc.stdout.readline()
        if not line:
            break
        if m := re.search(r"on http://127\.0\.0\.1:(\d+)/", line):
            port = int(m.group(1))
            break
    assert port, "deeploc serve did not start"
    threading.Thread(target=proc.stdout.read, daemon=True).start()  # keep its log from filling the pipe
    yield port, proc.pid
    proc.terminate()
    proc.wait(timeout=30)


def exchange(port: int, request: bytes, timeout: float = 3.0, then: bytes = b"", pause: float = 0.0):
    """Send ``request`` (then, after ``pause`` s, ``then``) on a fresh connection; read one answer until
    its length is in or the server closes. Returns (status, headers, body, seconds, closed): closed when
    the server closed the connection within a second of its answer."""
    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        try:
            s.sendall(request)
        except (BrokenPipeError, ConnectionResetError):  # refused while we sent: its answer is still to read
            pass
        if then:
            time.sleep(pause)
            s.sendall(then)
        data, closed = b"", False
        for _ in range(10_000):
            try:
                chunk = s.recv(65536)
            except socket.timeout:
                break
            if not chunk:
                closed = True
                break
            data += chunk
            while data.startswith(b"HTTP/1.1 100 ") and b"\r\n\r\n" in data:  # an interim answer: the final follows
                data = data.partition(b"\r\n\r\n")[2]
            head, sep, rest = data.partition(b"\r\n\r\n")
            if sep:
                length = re.search(rb"(?i)\r\ncontent-length: *(\d+)", head)
                expected = 0 if request.startswith(b"HEAD ") or head.startswith(b"HTTP/1.1 304") else \
                    int(length.group(1)) if length else None
                if expected is not None and len(rest) >= expected:
                    s.settimeout(1.0)  # the answer is in: does the server close the connection after it?
                    try:
                        closed = s.recv(1) == b""
                    except (socket.timeout, ConnectionResetError):
                        pass
                    break
        else:
            raise AssertionError("the answer never ended")
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, v in (ln.split(":", 1) for ln in lines[1:] if ":" in ln)}
    return int(lines[0].split()[1]), headers, body, time.monotonic() - started, closed


def form(photo: bytes, name: str = "photo") -> bytes:
    return (f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="{name}"; filename="p.jpg"\r\n'
            f"Content-Type: image/jpeg\r\n\r\n").encode() + photo + f"\r\n--{BOUNDARY}--\r\n".encode()


def post(body: bytes | None = None, host: str = "127.0.0.1", length: str | None = None, extra: str = "") -> bytes:
    head = f"POST /api/predict HTTP/1.1\r\nHost: {host}\r\nContent-Type: multipart/form-data; boundary={BOUNDARY}\r\n"
    if length is not None or body is not None:
        head += f"Content-Length: {length if length is not None else len(body)}\r\n"
    return (head + extra + "\r\n").encode() + (body or b"")


def jpeg(w=640, h=480, seed=0) -> bytes:
    rgb = (np.random.default_rng(seed).random((h // 8, w // 8, 3)) * 255).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(rgb).resize((w, h)).save(buf, "JPEG", quality=88)
    return buf.getvalue()


def assert_guarded(headers: dict) -> None:
    assert "default-src 'none'" in headers.get("content-security-policy", ""), headers
    assert headers.get("x-content-type-options") == "nosniff" and headers.get("referrer-policy") == "no-referrer"


def test_lengths_are_judged_before_the_body(served):
    port, _ = served
    for length, status in (("-1", 400), ("abc", 400), ("300000000", 413)):
        code, headers, _, seconds, _ = exchange(port, post(length=length))  # headers only: no body is ever sent
        assert code == status and seconds < 1, (length, code, seconds)
        assert_guarded(headers)
    code, headers, body, seconds, _ = exchange(port, post())  # no Content-Length, not chunked
    assert code == 411 and seconds < 1 and b"Content-Length" in body
    assert_guarded(headers)


def test_stalls_are_cut_by_the_servers_timeouts(served):
    port, _ = served
    # A form that stops inside the photo, 1,000 bytes short: 408 after the 1 s read timeout, connection closed.
    partial = form(b"\xff\xd8\xff" + b"x" * 100)[:120]
    code, headers, _, seconds, closed = exchange(port, post(partial, length=str(len(partial) + 1000)), timeout=5)
    assert code == 408 and 0.9 < seconds < 3 and closed
    assert_guarded(headers)
    # Headers trickled and never finished: closed with a 408 after the 2 s header deadline.
    code, headers, _, seconds, closed = exchange(port, b"POST /api/predict HTTP/1.1\r\nHost: 127.0.0.1\r\n", timeout=5)
    assert code == 408 and 1.9 < seconds < 4 and closed
    assert_guarded(headers)


def test_expect_continue_chunked_and_the_limit_while_reading(served):
    port, _ = served
    body = form(jpeg())
    code, _, _, seconds, _ = exchange(port, post(body=None, length=str(len(body)), extra="Expect: 100-continue\r\n"),
                                      then=body, pause=0.2)
    assert code == 200 and seconds < 30
    chunked = b"".join(b"%x\r\n%s\r\n" % (len(body[i:i + 4096]), body[i:i + 4096]) for i in range(0, len(body), 4096))
    code, _, answer, _, _ = exchange(port, post(extra="Transfer-Encoding: chunked\r\n") + chunked + b"0\r\n\r\n", timeout=30)
    assert code == 200 and b'"prediction"' in answer
    # Chunked past the 2 MB limit by 100 KB, and then nothing: a 413 (not the read timeout's 408) proves
    # the server judged the body as it came, without waiting for an end that never comes.
    over = form(b"\xff\xd8\xff" + os.urandom((2 << 20) + (100 << 10)))[:-40]
    chunks = b"".join(b"%x\r\n%s\r\n" % (len(over[i:i + 65536]), over[i:i + 65536]) for i in range(0, len(over), 65536))
    code, _, answer, seconds, closed = exchange(port, post(extra="Transfer-Encoding: chunked\r\n") + chunks, timeout=5)
    assert code == 413 and b"over 2 MB" in answer and closed and seconds < 2


def test_fifty_simultaneous_uploads_are_all_answered(served):
    port, _ = served
    request = post(form(jpeg(seed=1)))

    def one(_):
        return exchange(port, request, timeout=120)

    with ThreadPoolExecutor(50) as pool:
        answers = list(pool.map(one, range(50)))  # a reset would raise here
    codes = [a[0] for a in answers]
    assert set(codes) <= {200, 503} and codes.count(200) >= 6, codes  # 2 threads + 4 waiting at least
    assert all(int(a[1]["retry-after"]) >= 1 for a in answers if a[0] == 503)
    assert all("content-security-policy" in a[1] for a in answers)


def _rss(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        return next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmRSS"))


def test_memory_stays_bounded_under_eight_40_megapixel_pngs(served):
    port, pid = served
    buf = io.BytesIO()
    Image.new("RGB", (8000, 5000), (90, 120, 160)).save(buf, "PNG")  # exactly the 40 MP limit, a small file
    request = post(form(buf.getvalue()))
    idle, peak, done = _rss(pid), [0], threading.Event()

    def watch():
        for _ in range(30_000):  # every 10 ms, at most 5 minutes
            peak[0] = max(peak[0], _rss(pid))
            if done.wait(0.01):
                return

    watcher = threading.Thread(target=watch)
    watcher.start()
    with ThreadPoolExecutor(8) as pool:
        codes = [a[0] for a in pool.map(lambda _: exchange(port, request, timeout=240), range(8))]
    done.set()
    watcher.join()
    assert set(codes) <= {200, 503} and 200 in codes, codes
    assert peak[0] - idle < 1.5 * 2**30, f"{(peak[0] - idle) / 2**20:.0f} MB above idle"


def _png(width: int, height: int) -> bytes:
    """A complete 1-bit PNG of width x height (all black): a decompression bomb in a few kilobytes."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    packer, row = zlib.compressobj(9), b"\0" * (1 + (width + 7) // 8)
    idat = b"".join(packer.compress(row) for _ in range(height)) + packer.flush()
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0))
            + chunk(b"IDAT", idat) + chunk(b"IEND", b""))


def test_bombs_and_headers_without_pixels(served):
    port, _ = served
    for photo in (_png(20000, 20000), _png(9000, 5000)):  # beyond Pillow's own limit, and beyond ours (40 MP)
        code, headers, body, _, _ = exchange(port, post(form(photo)), timeout=30)
        assert code == 413 and b"megapixels" in body, (code, body)
    # An 810-byte JPEG whose header claims 6000 x 6000 pixels (libjpeg would fill them with grey).
    real = bytearray(jpeg(64, 64))
    sof = real.find(b"\xff\xc0")
    real[sof + 5:sof + 9] = struct.pack(">HH", 6000, 6000)
    sos = real.find(b"\xff\xda")
    fake = bytes(real[:sos + 2 + struct.unpack(">H", real[sos + 2:sos + 4])[0] + 100]) + b"\xff\xd9"
    code, _, body, _, _ = exchange(port, post(form(fake)), timeout=30)
    assert code == 422 and b"could not be decoded" in body


def test_foreign_hosts_and_origins_are_refused(served):
    port, _ = served
    code, headers, body, _, _ = exchange(port, b"GET / HTTP/1.1\r\nHost: attacker.example\r\n\r\n")
    assert code == 400 and b"attacker.example" in body  # DNS rebinding: the page is not given away
    assert_guarded(headers)
    photo = form(jpeg(seed=2))
    code, _, body, _, _ = exchange(port, post(photo, extra="Origin: http://attacker.example\r\n"))
    assert code == 403 and b"own page" in body
    code, _, _, _, _ = exchange(port, post(photo, host=f"localhost:{port}", extra=f"Origin: http://localhost:{port}\r\n"),
                                timeout=30)
    assert code == 200


def test_files_caching_compression_and_what_is_not_served(served):
    port, _ = served

    def get(path, extra="", method="GET"):
        return exchange(port, f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n{extra}\r\n".encode())

    code, headers, body, _, _ = get("/", "Accept-Encoding: gzip\r\n")
    assert code == 200 and headers["content-encoding"] == "gzip" and headers["cache-control"] == "no-cache"
    page = zlib.decompress(body, 16 + zlib.MAX_WBITS).decode()
    assert "deeploc-data" in page and int(headers["content-length"]) < len(page) / 3
    code, again, body, _, _ = get("/", f"Accept-Encoding: gzip\r\nIf-None-Match: {headers['etag']}\r\n")
    assert code == 304 and body == b"" and again["etag"] == headers["etag"]
    assert_guarded(again)
    code, head, body, _, _ = get("/", method="HEAD")
    assert code == 200 and body == b"" and int(head["content-length"]) == len(page.encode())
    vendor = re.search(r'src="(vendor/[0-9a-f]+/leaflet\.js)"', page).group(1)
    code, headers, _, _, _ = get("/" + vendor)
    assert code == 200 and "immutable" in headers["cache-control"] and "last-modified" in headers
    for path in ("/.secret", "/leak.txt", "/../../etc/passwd", "/%2e%2e/%2e%2e/etc/passwd", "/vendor/..%2f..%2fsite.json"):
        code, headers, body, _, _ = get(path)
        assert code == 404 and b"outside" not in body and b"not for clients" not in body, path
        assert_guarded(headers)
    code, headers, _, _, _ = get("/api/predict")
    assert code == 405
    assert_guarded(headers)
    code, headers, body, _, _ = get("/healthz")
    assert code == 200 and b'"ok":true' in body


def test_exposed_without_allowed_hosts_is_refused(tmp_path):
    res = subprocess.run([sys.executable, "-m", "deeploc.cli", "serve", "--lake", str(tmp_path), "--host", "0.0.0.0"],
                         capture_output=True, text=True, timeout=120)
    assert res.returncode != 0 and "--allowed-host" in res.stderr
