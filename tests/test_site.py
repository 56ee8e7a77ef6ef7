"""The web map in a real headless Chromium (Debian's, driven by Playwright) against ``deeploc serve`` on
loopback: basemap and 100 thumbnails, a chosen photo's markers, line and distance, the accuracy table,
your own photo (with and without EXIF GPS), clear refusals, hostile titles shown as text, and no
request leaving loopback. Screenshots are saved under $DEEPLOC_SCREENSHOTS (default .deeploc/screenshots)."""

import io
import json
import os
import shutil
import threading

import numpy as np
import pandas as pd
import pytest
from conftest import REPO, current, put_table, table
from playwright.sync_api import expect
from PIL import Image

pytestmark = pytest.mark.slow
HOSTILE = '<script>window.owned=1</script><img src=x onerror="window.owned=2">'
SHOTS = os.environ.get("DEEPLOC_SCREENSHOTS") or str(REPO / ".deeploc" / "screenshots")


@pytest.fixture(scope="module")
def site(trained, tmp_path_factory):
    """A lake with the trained run, its predictions (one of them titled with markup), metrics and the site."""
    from pyiceberg.expressions import EqualTo

    from deeploc.stages import evaluate, infer, publish

    lake, bucket, _, _, _ = trained
    copy = tmp_path_factory.mktemp("site-lake") / "lake"
    for folder in ("models", "partitionings"):  # folder outputs: their pointers name versions, not paths
        shutil.copytree(lake / folder, copy / folder)
    infer.run(str(copy), bucket, "t1")
    pred = table(copy, "predictions")
    pred.loc[pred.index[0], "title"] = HOSTILE  # untrusted text, as Flickr titles can be
    put_table(copy, "predictions", pred, ("run",), replace=EqualTo("run", "t1"))
    evaluate.run(str(copy), "t1")
    publish.run(str(copy), bucket, "t1", seed=3)
    return copy, pred


@pytest.fixture(scope="module")
def server(site):
    from deeploc.serve import make_server

    srv = make_server(str(site[0]), port=0)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{srv.server_address[1]}"
    srv.shutdown()


def _page(browser, requests):
    page = browser.new_page(viewport={"width": 1300, "height": 1000})
    page.on("request", lambda r: requests.append(r.url))
    return page


def _jpeg(rgb, exif=None) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, "JPEG", quality=92, **({"exif": exif} if exif is not None else {}))
    return buf.getvalue()


def _with_gps(lat=48.8584, lon=2.2945):
    exif = Image.Exif()
    gps = exif.get_ifd(0x8825)
    dms = lambda v: (int(abs(v)), int(abs(v) * 60 % 60), round(abs(v) * 3600 % 60, 2))  # noqa: E731
    gps.update({1: "N" if lat >= 0 else "S", 2: dms(lat), 3: "E" if lon >= 0 else "W", 4: dms(lon)})
    return exif


def test_the_map_the_photos_and_the_results(site, server, browser):
    lake, pred = site
    requests = []
    page = _page(browser, requests)
    page.goto(server)
    page.wait_for_selector("#gallery button")
    os.makedirs(SHOTS, exist_ok=True)
    assert page.locator("#gallery img").count() == min(100, len(pred))  # 100 at a time (the demo's test split is smaller)
    assert page.locator(".leaflet-overlay-pane path").count() > 100  # the countries, drawn from Natural Earth
    page.locator("#gallery button").nth(7).click()
    photo_id = int(page.locator("#gallery button").nth(7).get_attribute("data-id"))
    row = pred.set_index("photo_id").loc[photo_id]
    assert page.locator(".truth-marker").count() >= 2 and page.locator(".pred-marker").count() == 1
    assert page.locator("path.gc-line").count() == 1 and page.locator("path.topk-cell").count() == 5
    assert page.locator("#distance").text_content() == f"{row['hierarchy_km']:.1f} km"
    page.screenshot(path=os.path.join(SHOTS, "site-photo.png"))
    metrics = json.loads((current(lake, "metrics/t1") / "metrics.json").read_text())
    rows = page.locator("#accuracy tbody tr")
    assert rows.count() == len(metrics["table"])
    for i, m in enumerate(metrics["table"]):
        cells = rows.nth(i).locator("td").all_text_contents()
        assert cells[0] == m["method"] and cells[3] == f"{100 * m['region_200km']:.1f} %" and cells[-1] == str(m["n"])
    assert page.locator("#figures img").count() == 2
    page.locator("#shuffle").click()
    assert page.locator("#gallery-note").text_content().endswith("(draw 2)")
    assert all(u.startswith((server, "data:")) for u in requests), [u for u in requests if not u.startswith(server)]
    page.close()


def test_a_hostile_title_stays_text(site, server, browser):
    _, pred = site
    page = _page(browser, [])
    page.goto(server)
    page.wait_for_selector("#gallery button")
    hostile = int(pred.iloc[0]["photo_id"])
    for draw in range(40):  # shuffle until the photo with the markup in its title is drawn
        if page.locator(f'#gallery button[data-id="{hostile}"]').count():
            break
        page.locator("#shuffle").click()
    page.locator(f'#gallery button[data-id="{hostile}"]').click()
    assert page.locator("#title").text_content() == HOSTILE
    assert page.evaluate("window.owned") is None and page.locator("#details img[src='x']").count() == 0
    page.close()


def test_your_own_photo(site, server, browser, tmp_path):
    from skimage import data as photos

    requests = []
    page = _page(browser, requests)
    page.goto(server)
    page.wait_for_selector("#gallery button")
    coffee = photos.coffee()  # a real photograph that scikit-image ships
    (tmp_path / "plain.jpg").write_bytes(_jpeg(coffee))
    (tmp_path / "gps.jpg").write_bytes(_jpeg(coffee, _with_gps()))
    (tmp_path / "notes.jpg").write_text("not a photo at all, whatever the name says")
    (tmp_path / "huge.jpg").write_bytes(b"\xff\xd8\xff" + os.urandom(21 << 20))

    def upload(name):
        page.set_input_files("#file", str(tmp_path / name))
        with page.expect_response("**/api/predict") as resp:
            page.locator("#upload button").click()
        # A locator wait, not wait_for_function: the page's CSP (no 'unsafe-eval') stops string evaluation.
        expect(page.locator("#upload-message")).not_to_have_text("Looking…")
        return resp.value, page.locator("#upload-message").text_content()

    resp, message = upload("plain.jpg")
    plain = resp.json()
    assert resp.status == 200 and message.startswith("Most likely") and page.locator(".own-marker").count() == 5
    resp, message = upload("gps.jpg")
    with_gps = resp.json()
    assert with_gps["exif_gps"]["lat"] == pytest.approx(48.8584, abs=1e-3)
    assert with_gps["prediction"] == plain["prediction"]  # the position never reached the network
    assert "EXIF says 48.858" in message and page.locator(".truth-marker").count() >= 1
    page.screenshot(path=os.path.join(SHOTS, "site-upload.png"))
    resp, message = upload("notes.jpg")
    assert resp.status == 415 and "not a JPEG or PNG" in message
    resp, message = upload("huge.jpg")
    assert resp.status == 413 and "over 20 MB" in message
    assert all(u.startswith((server, "data:")) for u in requests)
    page.close()


def test_refusals_and_headers_without_a_browser(server):
    import urllib.error
    import urllib.request

    with urllib.request.urlopen(server + "/") as resp:
        csp = resp.headers["Content-Security-Policy"]
    assert "script-src 'self'" in csp and "default-src 'none'" in csp and "'unsafe-inline'" not in csp
    truncated = _jpeg(np.zeros((64, 64, 3), np.uint8))[:200]
    body = (b"--b\r\nContent-Disposition: form-data; name=\"photo\"; filename=\"t.jpg\"\r\n"
            b"Content-Type: image/jpeg\r\n\r\n" + truncated + b"\r\n--b--\r\n")
    req = urllib.request.Request(server + "/api/predict", data=body, method="POST",
                                 headers={"Content-Type": "multipart/form-data; boundary=b"})
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(req)
    assert err.value.code == 422 and "could not be decoded" in json.loads(err.value.read())["error"]
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(server + "/../../etc/passwd")
    assert err.value.code == 404


def test_the_site_opens_from_a_file(site, browser):
    lake, _ = site
    page = browser.new_page()
    page.goto((current(lake, "site") / "index.html").as_uri())
    page.wait_for_selector("#gallery button")
    assert page.locator("#gallery img").count() == min(100, len(site[1]))
    page.set_input_files("#file", str(REPO / "tasks" / "deeploc" / "site_template" / "style.css"))
    page.locator("#upload button").click()
    assert "needs the server" in page.locator("#upload-message").text_content()
    page.close()
