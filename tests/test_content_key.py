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
