"""Where the front-end packages and the Natural Earth outlines are: installed from the npm registry by
the set-up (``web/node_modules``, from ``web/package.json`` and its lock), or carried inside the code
package the aws target ships (``deeploc/web_assets``). Nothing is downloaded at run time."""

from __future__ import annotations

import os
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1]   # tasks/deeploc, or the installed deeploc
PACKAGE_COPY = PACKAGE / "web_assets"
# What the site and the evaluation use, relative to node_modules.
FILES = ["leaflet/dist/leaflet.js", "leaflet/dist/leaflet.css", "leaflet/dist/images/marker-icon.png",
         "leaflet/dist/images/marker-icon-2x.png", "leaflet/dist/images/marker-shadow.png",
         "leaflet/dist/images/layers.png", "leaflet/dist/images/layers-2x.png",
         "leaflet.markercluster/dist/leaflet.markercluster.js", "leaflet.markercluster/dist/MarkerCluster.css",
         "leaflet.markercluster/dist/MarkerCluster.Default.css",
         "world-atlas/countries-50m.json", "world-atlas/countries-110m.json"]


def root() -> Path:
    """The folder holding ``FILES``: ``DEEPLOC_WEB_ASSETS``, the repository's web/node_modules, or the
    package's own copy."""
    candidates = [os.environ.get("DEEPLOC_WEB_ASSETS"), PACKAGE.parents[1] / "web" / "node_modules",
                  PACKAGE_COPY]
    for c in candidates:
        if c and (Path(c) / FILES[-1]).is_file():
            return Path(c)
    raise FileNotFoundError("the web assets (Leaflet, Natural Earth outlines) are not installed: run ./dev once "
                            "(it runs npm ci in web/), or set DEEPLOC_WEB_ASSETS to a node_modules folder")


def path(rel: str) -> Path:
    return root() / rel
