"""The tags mediasec names (``mediasec.dicom.tags``) are the standard's: each keyword and
tag agrees with pydicom's data dictionary (PS3.6), and no other module spells them."""

from __future__ import annotations

import pathlib
import re

from pydicom.datadict import keyword_for_tag, tag_for_keyword

from mediasec.dicom import tags

ROOT = pathlib.Path(__file__).resolve().parents[1] / "mediasec"


def test_every_tag_has_its_dictionary_keyword():
    assert len(tags.KEYWORDS) == len(tags.TAG) >= 30
    for tag, keyword in tags.KEYWORDS.items():
        assert keyword_for_tag(tag) == keyword, hex(tag)
        assert tag_for_keyword(keyword) == tag == tags.tag_for(keyword)
    assert tags.keyword_for(0x00100010) == "PatientName" and tags.keyword_for(0x00091001) is None
    for name in tags.__all__:
        if name.isupper() and name not in ("KEYWORDS", "TAG", "PIXEL_BULK"):
            assert getattr(tags, name) in tags.KEYWORDS, name


def test_tags_are_named_in_one_place():
    """Outside tags.py no module spells a tag of the table as a hex number (media/validate.py
    is being reworked on another branch and follows next)."""
    spelled = re.compile(r"0x([0-9A-Fa-f]{8})\b")
    problems = []
    for path in sorted(ROOT.rglob("*.py")):
        rel = path.relative_to(ROOT).as_posix()
        if rel in ("dicom/tags.py", "media/validate.py"):
            continue
        for n, line in enumerate(path.read_text().splitlines(), 1):
            for m in spelled.finditer(line):
                if int(m.group(1), 16) in tags.KEYWORDS:
                    problems.append(f"{rel}:{n}: {m.group(0)}")
    assert not problems, "\n".join(problems)
