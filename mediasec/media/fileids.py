"""Referenced File ID values from a DICOMDIR, checked for containment and syntax before
anything is resolved (``..``, ``.``, absolute paths, drive letters, empty components:
``PATH_ESCAPE``, never followed).
"""

from __future__ import annotations

import re

from mediasec.report import Finding, Outcome

__all__ = ["check_file_id_value"]

_FILEID_COMPONENT = re.compile(r"[A-Z0-9_]{1,8}\Z")


# -- File IDs from a DICOMDIR ------------------------------------------------------------------

def check_file_id_value(value: str) -> tuple[tuple[str, ...] | None, list[Finding]]:
    """Split a (0004,1500) value; ``(None, [PATH_ESCAPE])`` if it must never be followed.

    Escapes: an empty value or component (a leading ``\\`` is absolute), ``.``/``..``, ``/``
    inside a component (another separator), a drive letter or ``:``, NUL or control bytes.
    Otherwise the components are returned, with ``FILEID_INVALID`` when they break PS3.10
    (lower case, extensions, over 8 characters or components): resolved, but reported.
    """
    raw = value.rstrip(" \0")
    shown = raw.encode("unicode_escape").decode("ascii")[:120]
    comps = tuple(raw.split("\\"))
    bad = None
    if not raw:
        bad = "is empty"
    elif comps[0] == "":
        bad = "is absolute (starts with a separator)"
    elif any(c == "" for c in comps):
        bad = "has an empty component"
    elif any(c.strip() in (".", "..") for c in comps):
        bad = "contains '.' or '..'"
    elif any("/" in c for c in comps):
        bad = "contains '/'"
    elif any(":" in c for c in comps):
        bad = "contains a drive letter or ':'"
    elif any(ord(ch) < 0x20 or ord(ch) == 0x7F for c in comps for ch in c):
        bad = "contains control characters"
    if bad is not None:
        return None, [Finding("PATH_ESCAPE", Outcome.FAILED,
                              f"Referenced File ID {shown!r} {bad}: not followed",
                              {"file_id": shown})]
    comps = tuple(c.strip() for c in comps)
    problems = []
    if len(comps) > 8:
        problems.append(f"{len(comps)} components (at most 8)")
    for c in comps:
        if not _FILEID_COMPONENT.match(c):
            problems.append(f"component {c!r} is not 1-8 characters of A-Z 0-9 _")
            break
    if problems:
        return comps, [Finding("FILEID_INVALID", Outcome.FAILED,
                               f"Referenced File ID {shown!r} breaks PS3.10 8.2: "
                               f"{'; '.join(problems)} (resolved tolerantly)",
                               {"file_id": shown})]
    return comps, []
