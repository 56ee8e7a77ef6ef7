"""What the web map may load: one Content-Security-Policy for ``deeploc serve``'s answers and for the
published page's own ``<meta>`` tag (which is all a page opened from ``file://`` has), and the one outside
origin it may name, a tile server, validated before it reaches the policy."""

from __future__ import annotations

import re
from urllib.parse import urlsplit

# A plain host name (Leaflet's {s} subdomain placeholder allowed at its start) and an optional port.
_TILE_HOST = re.compile(r"^(\{s\}\.)?[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)*(:[0-9]{1,5})?$",
                        re.IGNORECASE)


def tile_url(url: str | None) -> str | None:
    """The tile URL template if it is safe to name in the policy; None if none is configured."""
    if url in (None, ""):
        return None
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not _TILE_HOST.match(parts.netloc) or re.search(r"[\s'\";,]", url):
        raise ValueError(f"the tile URL {url!r} must be http(s)://host[:port]/path with a plain host name "
                         "(Leaflet's {s} allowed at the host's start), e.g. https://{s}.tile.example.org/{z}/{x}/{y}.png")
    return url


def content_security_policy(tiles: str | None, meta: bool = False) -> str:
    """Nothing but the site itself (and the tile host): no inline script, no eval, no framing. ``meta``
    leaves out what a ``<meta>`` policy cannot carry (frame-ancestors)."""
    img = "'self' data: blob:"
    if tile_url(tiles):
        parts = urlsplit(tiles)
        img += f" {parts.scheme}://{parts.netloc.replace('{s}', '*')}"
    policy = ("default-src 'none'; script-src 'self'; style-src 'self'; " f"img-src {img}; connect-src 'self'; "
              "form-action 'self'; base-uri 'none'")
    return policy if meta else policy + "; frame-ancestors 'none'"


def security_headers(tiles: str | None) -> list[tuple[str, str]]:
    """The headers every answer of the server carries, its own error pages included."""
    return [("Content-Security-Policy", content_security_policy(tiles)), ("X-Content-Type-Options", "nosniff"),
            ("Referrer-Policy", "no-referrer"), ("Cross-Origin-Resource-Policy", "same-origin")]
