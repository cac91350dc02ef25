"""Frozen results: outcomes, findings and per-file results, and their JSON form.

A finding carries a stable reason code (``CMS_``, ``SIG_``, ``DIR_``, ``FILE_`` ...)
and an outcome. ``to_dict()`` *is* the JSON contract: adding a key keeps the schema
version, renaming or changing the meaning of one bumps it.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Outcome", "Finding", "FileResult", "worst"]


class Outcome(str, enum.Enum):
    PASSED = "passed"
    INFO = "info"
    #: something could not be checked (e.g. encrypted and no key): listed, not a failure
    INDETERMINATE = "indeterminate"
    WARNING = "warning"
    FAILED = "failed"


_RANK = {Outcome.PASSED: 0, Outcome.INFO: 0, Outcome.WARNING: 1, Outcome.INDETERMINATE: 2,
         Outcome.FAILED: 3}


def worst(outcomes) -> Outcome:
    """The most severe outcome (FAILED > INDETERMINATE > WARNING > PASSED/INFO)."""
    result = Outcome.PASSED
    for o in outcomes:
        if _RANK[o] > _RANK[result]:
            result = o
    return result


@dataclass(frozen=True)
class Finding:
    code: str
    outcome: Outcome
    message: str
    detail: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"code": self.code, "outcome": self.outcome.value,
                             "message": self.message}
        if self.detail:
            d["detail"] = self.detail
        return d


@dataclass(frozen=True)
class FileResult:
    path: str
    findings: tuple[Finding, ...] = ()
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def status(self) -> Outcome:
        st = worst(f.outcome for f in self.findings)
        return Outcome.PASSED if st is Outcome.INFO else st

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"path": self.path, "status": self.status.value,
                             "reasons": [f.to_dict() for f in self.findings]}
        d.update(self.info)
        return d
