import csv
import hashlib

from deeploc.sources import yfcc


def test_hash_drops_leading_zero_of_each_byte():
    url = "http://farm8.staticflickr.com/7205/6985418911_df7747990d.jpg"
    assert yfcc.flickr_hash(url) == "4e2f7a26a1dfbf165a7e30bdabf7e72a"  # column 2 of the first real row
    # A URL whose digest has bytes below 0x10 must give a shorter stem than the hexdigest.
    for i in range(1000):
        u = f"http://farm1.staticflickr.com/1/{i}_x.jpg"
        digest = hashlib.md5(u.encode()).digest()
        if any(b < 16 for b in digest):
            h = yfcc.flickr_hash(u)
            assert len(h) < 32 and h == "".join(f"{b:x}" for b in digest)
            break
    else:
        raise AssertionError("no digest with a small byte in 1000 URLs")


def test_object_key_layout():
    assert yfcc.object_key("4e2f7a26a1dfbf165a7e30bdabf7e72a") == \
        "data/images/4e2/f7a/4e2f7a26a1dfbf165a7e30bdabf7e72a.jpg"


def test_hash_rule_reproduces_every_real_row(shared_sample):
    with open(shared_sample, newline="", encoding="utf-8") as f:
        rows = list(csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE))
    assert len(rows) == 600 and all(len(r) == 25 for r in rows)
    assert sum(yfcc.flickr_hash(r[16]) == r[2] for r in rows) == 600
