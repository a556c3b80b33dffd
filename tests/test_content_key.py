"""tss.atomic.content_key, the key of every cached step: the same content gives the same key in any
order, different content a different key, and the format is pinned (a change to it would silently
invalidate every cache and every committed run key)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from tss.atomic import content_key


def test_a_key_depends_on_the_content_not_on_its_order():
    a = {"seed": 0, "plan": {"tss": 120.0, "side": "L"}, "params": [1, 2]}
    b = {"params": [1, 2], "plan": {"side": "L", "tss": 120.0}, "seed": 0}
    assert content_key(a) == content_key(b)
    assert content_key(a) != content_key({**a, "seed": 1})
    assert content_key({"p": [1, 2]}) != content_key({"p": [2, 1]})  # list order is content


def test_the_key_format_is_pinned():
    # the committed run keys (results/*/runs/**/summary.json) and every cache were made with it
    obj = {"b": 1, "a": [1, 2.5], "p": Path("x/y")}
    assert content_key(obj) == "1f7748e09187d1c4"
    assert content_key(obj) == hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:16]
    assert content_key("k:4:torch.float32") == hashlib.sha256(b"k:4:torch.float32").hexdigest()[:16]


def test_a_cached_step_is_reused_only_when_its_marker_holds_the_key_and_its_outputs_exist(tmp_path):
    from tss.atomic import cached

    marker, out = tmp_path / "summary.json", tmp_path / "predictions.csv"
    assert cached(marker, "k1", [out]) is None  # never ran
    out.write_text("p\n")
    marker.write_text(json.dumps({"key": "k1", "auc": 0.7}))
    assert cached(marker, "k1", [out]) == {"key": "k1", "auc": 0.7}
    assert cached(marker, "k2", [out]) is None  # another configuration
    assert cached(marker, "k1", [out], field="cache_key") is None  # the key is read from the named field
    out.unlink()
    assert cached(marker, "k1", [out]) is None  # an output went missing
