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
