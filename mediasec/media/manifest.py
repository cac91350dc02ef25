"""``MANIFEST.SHA`` as ``sha256sum`` writes it: parsed into path -> digest, with findings
for malformed lines.
"""

from __future__ import annotations

import re

from mediasec.media.source import norm_path
from mediasec.report import Finding, Outcome

__all__ = ["parse_manifest"]


# -- the manifest ---------------------------------------------------------------------------

_MANIFEST_LINE = re.compile(r"([0-9a-fA-F]{64}) [ *](.+)\Z")


def parse_manifest(data: bytes) -> tuple[dict[str, str], list[Finding]]:
    """``sha256sum`` lines -> {normalised path: lowercase hex}; bad lines are findings."""
    out: dict[str, str] = {}
    findings: list[Finding] = []
    try:
        text = data.decode("ascii")
    except UnicodeDecodeError:
        return {}, [Finding("MANIFEST_MALFORMED", Outcome.FAILED,
                            "MANIFEST.SHA is not ASCII text")]
    bad = 0
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        m = _MANIFEST_LINE.match(line)
        if m is None:
            bad += 1
            if bad <= 3:
                findings.append(Finding("MANIFEST_MALFORMED", Outcome.FAILED,
                                        f"MANIFEST.SHA line {n} is not '<sha256>  <path>'"))
            continue
        p = m.group(2).strip().replace("\\", "/").lstrip("./")
        if p.startswith("/"):
            p = p.lstrip("/")
        out[norm_path(p)] = m.group(1).lower()
    if bad > 3:
        findings.append(Finding("MANIFEST_MALFORMED", Outcome.FAILED,
                                f"MANIFEST.SHA has {bad} malformed lines in all"))
    return out, findings
