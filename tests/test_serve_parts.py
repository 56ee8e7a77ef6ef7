"""The server's parts without a server: the tile URL before it reaches the policy, the multipart field
read from chunks cut anywhere, which paths are files of the site, conditional requests, Host names."""

import os

import pytest
from deeploc.web import site_policy
from deeploc.web.serve import host_name
from deeploc.web.site_files import not_modified, SiteFiles
from deeploc.web.upload import PhotoField, Refused
from starlette.requests import Request


@pytest.mark.parametrize("url", ["https://{s}.tile.openstreetmap.org/{z}/{x}/{y}.png",
                                 "http://tiles.example.org:8080/{z}/{x}/{y}.png"])
def test_plain_tile_urls_are_kept(url):
    assert site_policy.tile_url(url) == url


@pytest.mark.parametrize("url", ["javascript:alert(1)", "https://a.example.org; script-src *", "https://x'y.org/t",
                                 "https://user@tiles.example.org/{z}", "https://*.example.org/{z}", "ftp://t.org/x",
                                 "https://t.org /{z}"])
def test_tile_urls_that_would_bend_the_policy_are_refused(url):
    with pytest.raises(ValueError, match="tile URL"):
        site_policy.tile_url(url)


def test_the_policy_names_the_tile_host_and_nothing_else():
    policy = site_policy.content_security_policy("https://{s}.tile.example.org/{z}/{x}/{y}.png")
    assert "img-src 'self' data: blob: https://*.tile.example.org;" in policy
    assert policy.endswith("frame-ancestors 'none'") and "frame-ancestors" not in site_policy.content_security_policy(None, meta=True)


def _body(photo: bytes, boundary: str = "XyZ", name: str = "photo") -> bytes:
    return (f"--{boundary}\r\nContent-Disposition: form-data; name=\"note\"\r\n\r\nhello\r\n"
            f"--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"; filename=\"a.jpg\"\r\n"
            f"Content-Type: image/jpeg\r\n\r\n").encode() + photo + f"\r\n--{boundary}--\r\n".encode()


@pytest.mark.parametrize("cut", [1, 7, 64, 10_000])
def test_the_photo_field_from_chunks_cut_anywhere(cut):
    photo = bytes(range(256)) * 40 + b"\r\n--XyZ-not-a-boundary\r\n"  # bytes that look like a boundary, almost
    body = _body(photo)
    field = PhotoField("multipart/form-data; boundary=XyZ", limit=1 << 20)
    for i in range(0, len(body), cut):
        field.feed(body[i:i + cut])
    assert field.photo() == photo


def test_forms_without_a_photo_or_over_the_limit_are_refused():
    field = PhotoField("multipart/form-data; boundary=XyZ", limit=1 << 20)
    field.feed(_body(b"abc", name="picture"))
    with pytest.raises(Refused, match="no field named 'photo'"):
        field.photo()
    field = PhotoField("multipart/form-data; boundary=XyZ", limit=100)
    with pytest.raises(Refused) as refused:
        field.feed(_body(b"x" * 101))
    assert refused.value.status == 413
    for ctype in ("application/json", "multipart/form-data"):  # not a form; a form without its boundary
        with pytest.raises(Refused) as refused:
            PhotoField(ctype, limit=100)
        assert refused.value.status == 400
    field = PhotoField("multipart/form-data; boundary=XyZ", limit=1 << 20)
    field.feed(_body(b"abc")[:-12])  # cut before the closing boundary
    with pytest.raises(Refused, match="closing boundary"):
        field.photo()


def test_only_regular_files_inside_the_site_are_found(tmp_path):
    site, outside = tmp_path / "site", tmp_path / "secret.txt"
    (site / "img").mkdir(parents=True)
    (site / "index.html").write_text("page")
    (site / "img" / "1.jpg").write_bytes(b"jpg")
    (site / ".env").write_text("key")
    outside.write_text("private")
    os.symlink(outside, site / "out.txt")
    os.symlink(site / "index.html", site / "alias.html")  # a link that stays inside is a file of the site
    files = SiteFiles(str(site))
    assert files.find("/") == str(site / "index.html") and files.find("/img/1.jpg") == str(site / "img" / "1.jpg")
    assert files.find("/alias.html") == str(site / "index.html")
    for path in ("/.env", "/out.txt", "/../secret.txt", "/img/../../secret.txt", "/img", "/img\\1.jpg", "/nothing"):
        assert files.find(path) is None, path


def _request(**headers) -> Request:
    return Request({"type": "http", "method": "GET", "path": "/", "headers": [(k.replace("_", "-").encode(), v.encode())
                                                                              for k, v in headers.items()]})


def test_conditional_requests():
    etag, mtime = '"abc-1"', 1_700_000_000  # 2023-11-14 22:13:20 UTC
    assert not_modified(_request(if_none_match='"x", W/"abc-1"'), etag, mtime)
    assert not not_modified(_request(if_none_match='"x"', if_modified_since="Tue, 14 Nov 2023 22:13:20 GMT"), etag, mtime)
    assert not_modified(_request(if_modified_since="Tue, 14 Nov 2023 22:13:20 GMT"), etag, mtime)
    assert not not_modified(_request(if_modified_since="Tue, 14 Nov 2023 22:13:19 GMT"), etag, mtime)
    assert not not_modified(_request(if_modified_since="yesterday"), etag, mtime)


def test_host_names():
    assert host_name("[::1]:8000") == "[::1]" and host_name("Example.ORG:80") == "example.org"
    assert host_name("localhost") == "localhost" and host_name("") == ""
