"""``--json`` documents are written in pieces (``cli.render.json_parts``), byte for byte the
text ``json.dumps(doc, indent=2, default=str)`` makes, whatever the piece size."""

from __future__ import annotations

import datetime
import json

import pytest

from mediasec.cli.render import json_parts


DOC = {"schema": "mediasec.build/1", "files": [{"path": f"A/B{i}", "size": i * 1000,
                                                "sha256": "ab" * 32} for i in range(300)],
       "empty": {"list": [], "dict": {}}, "text": "é€\u2028\"\\", "n": [1.5, None, True, -0],
       "when": datetime.datetime(2026, 1, 2, 3, 4, 5)}


@pytest.mark.parametrize("size", [1, 7, 1 << 10, 1 << 16, 1 << 30])
def test_pieces_join_to_the_indented_document(size):
    parts = list(json_parts(DOC, size=size))
    assert "".join(parts) == json.dumps(DOC, indent=2, default=str) + "\n"
    if size >= 1 << 30:
        assert len(parts) == 1
    elif size <= 1 << 10:
        assert len(parts) > 10 and max(map(len, parts)) < size + 200


def test_cli_json_file_is_the_indented_document(tmp_path):
    from mediasec.cli.render import write_json
    out = tmp_path / "r.json"
    write_json(str(out), "mediasec.test/1", {"files": DOC["files"]})
    doc = json.loads(out.read_text())
    assert out.read_text() == json.dumps(doc, indent=2) + "\n"
    assert doc["files"] == DOC["files"] and doc["schema"] == "mediasec.test/1"


# -- the fast indenting encoder (``render._indented``) against json.dumps, any document ----

from hypothesis import given, settings, strategies as st  # noqa: E402

_scalars = (st.none() | st.booleans() | st.integers() | st.floats() | st.text()
            | st.dates() | st.binary(max_size=4))
_keys = st.text() | st.integers() | st.floats() | st.booleans() | st.none()
_docs = st.recursive(_scalars, lambda inner: st.lists(inner, max_size=5)
                     | st.lists(inner, max_size=3).map(tuple)
                     | st.dictionaries(_keys, inner, max_size=5), max_leaves=40)


@settings(max_examples=300, deadline=None)
@given(_docs, st.sampled_from([1, 50, 1 << 16]))
def test_any_document_is_the_indented_text_byte_for_byte(doc, size):
    # NaN/Infinity, -0.0, int/float/bool/None keys, tuples, empty containers, non-JSON
    # values through default=str, non-ASCII and control characters
    assert "".join(json_parts(doc, size=size)) == json.dumps(doc, indent=2, default=str) + "\n"


def test_bad_key_is_refused_as_json_dumps_does():
    with pytest.raises(TypeError):
        json.dumps({(1, 2): 1}, indent=2)
    with pytest.raises(TypeError):
        "".join(json_parts({"a": {(1, 2): 1}}))


def test_a_long_list_of_scalars_still_comes_in_pieces():
    doc = {"uids": [f"1.2.3.{i}" for i in range(5000)]}
    parts = list(json_parts(doc, size=1 << 10))
    assert "".join(parts) == json.dumps(doc, indent=2) + "\n"
    assert len(parts) > 50 and max(map(len, parts)) < 4 << 10
