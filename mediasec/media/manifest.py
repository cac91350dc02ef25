"""``MANIFEST.SHA`` as ``sha256sum`` writes it: parsed into path -> digest, with findings
for malformed lines.
"""

from __future__ import annotations

import re

from mediasec.media.source import norm_path
from mediasec.report import Finding, Outcome

__all__ = ["parse_manifest", "manifest_findings"]


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


def manifest_findings(manifest: dict | None, path: str, sha256: str | None) -> list[Finding]:
    """The file's line in MANIFEST.SHA against the SHA-256 of its stored bytes (the
    DICOMDIR's own line included, as ``sha256sum -c`` checks it)."""
    if manifest is None or sha256 is None:
        return []
    expected = manifest.get(path)
    if expected is None:
        return [Finding("MANIFEST_UNLISTED", Outcome.WARNING,
                        "the file is not listed in MANIFEST.SHA")]
    if expected != sha256:
        return [Finding("MANIFEST_MISMATCH", Outcome.FAILED,
                        "SHA-256 of the stored file differs from MANIFEST.SHA "
                        "(changed after the medium was written)")]
    return [Finding("MANIFEST_OK", Outcome.PASSED, "SHA-256 matches MANIFEST.SHA")]
