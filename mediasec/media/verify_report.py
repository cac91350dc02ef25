"""The frozen result of a validation (``MediaReport``, ``mediasec.verify/1``) and the
patient/study/series tree summaries it carries.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

from mediasec import __version__
from mediasec.dicom.scan import MEDIA_STORAGE_DIRECTORY
from mediasec.media.examine import FileFacts
from mediasec.report import FileResult, Finding, Outcome, worst

__all__ = ["SCHEMA", "MediaReport", "summarize_tree", "tree_from_facts"]

SCHEMA = "mediasec.verify/1"


# -- the report ------------------------------------------------------------------------------

@dataclass(frozen=True)
class MediaReport:
    """The frozen result of ``validate_medium``; ``to_dict()`` is the JSON document."""

    medium: dict
    findings: tuple[Finding, ...]
    files: tuple[FileResult, ...]
    tree: tuple[dict, ...] = ()
    schema: str = SCHEMA

    @property
    def outcome(self) -> Outcome:
        o = worst([*(f.outcome for f in self.findings), *(r.status for r in self.files)])
        return Outcome.PASSED if o is Outcome.INFO else o

    @property
    def failed(self) -> bool:
        return self.outcome is Outcome.FAILED

    def counts(self) -> dict:
        c = {"files": len(self.files), "passed": 0, "failed": 0, "indeterminate": 0,
             "with_warnings": 0}
        for r in self.files:
            st = r.status
            if st is Outcome.FAILED:
                c["failed"] += 1
            elif st is Outcome.INDETERMINATE:
                c["indeterminate"] += 1
            else:
                c["passed"] += 1
                if st is Outcome.WARNING:
                    c["with_warnings"] += 1
        return c

    def problems(self) -> dict[str, list[tuple[str, Finding]]]:
        """Non-passing findings grouped by code: code -> [(path or '', finding)]."""
        out: dict[str, list] = {}
        for f in self.findings:
            if f.outcome not in (Outcome.PASSED, Outcome.INFO):
                out.setdefault(f.code, []).append(("", f))
        for r in self.files:
            for f in r.findings:
                if f.outcome not in (Outcome.PASSED, Outcome.INFO):
                    out.setdefault(f.code, []).append((r.path, f))
        return out

    def to_dict(self) -> dict:
        return {"schema": self.schema, "version": __version__, "outcome": self.outcome.value,
                "medium": self.medium, "counts": self.counts(),
                "findings": [f.to_dict() for f in self.findings],
                "files": [r.to_dict() for r in self.files],
                "tree": [_public_node(n) for n in self.tree]}


_PHI_KEYS = ("patient_name", "patient_id")


def _public_node(node: dict) -> dict:
    """A tree node without patient names or IDs (for reports that travel)."""
    out = {k: v for k, v in node.items() if k not in _PHI_KEYS and k != "children"}
    if "children" in node:
        out["children"] = [_public_node(c) for c in node["children"]]
    return out


def summarize_tree(tree: Iterable[dict]) -> list[dict]:
    """patients -> studies -> series with instance counts (no files listed)."""
    def count(node: dict) -> int:
        return sum(1 for c in node.get("children", ()) if "file_id" in c or "path" in c)

    out = []
    for p in tree:
        if p.get("type") != "PATIENT":
            continue
        studies = []
        for st in p.get("children", ()):
            series = [{"series_uid": se.get("series_uid"), "modality": se.get("modality"),
                       "series_number": se.get("series_number"), "instances": count(se)}
                      for se in st.get("children", ()) if se.get("type") == "SERIES"]
            studies.append({"study_uid": st.get("study_uid"), "study_date": st.get("study_date"),
                            "study_description": st.get("study_description"),
                            "series": series})
        out.append({"patient_name": p.get("patient_name"), "patient_id": p.get("patient_id"),
                    "studies": studies})
    return out


def tree_from_facts(facts: Iterable[FileFacts]) -> list[dict]:
    """A PATIENT/STUDY/SERIES/leaf tree built from file headers (no usable DICOMDIR)."""
    patients: dict = {}
    for f in facts:
        h = f.header
        if h is None or h.sop_class_uid == MEDIA_STORAGE_DIRECTORY:
            continue
        pk = h.key("patient_id") or ""
        p = patients.setdefault(pk, {"type": "PATIENT", "patient_id": h.key("patient_id"),
                                     "patient_name": h.key("patient_name"), "_c": {}})
        sk = h.key("study_uid") or ""
        st = p["_c"].setdefault(sk, {"type": "STUDY", "study_uid": h.key("study_uid"),
                                     "study_date": h.key("study_date"),
                                     "study_description": h.key("study_description"),
                                     "study_id": h.key("study_id"), "_c": {}})
        ek = h.key("series_uid") or ""
        se = st["_c"].setdefault(ek, {"type": "SERIES", "series_uid": h.key("series_uid"),
                                      "modality": h.key("modality"),
                                      "series_number": h.key("series_number"), "_c": {}})
        se["_c"][f.path] = {"type": "INSTANCE", "path": f.path, "file_id": f.path,
                            "sop_instance_uid": h.sop_instance_uid,
                            "sop_class_uid": h.sop_class_uid,
                            "transfer_syntax": h.transfer_syntax,
                            "instance_number": h.key("instance_number")}

    def finish(node: dict) -> dict:
        kids = node.pop("_c", None)
        if kids:
            node["children"] = [finish(k) for k in kids.values()]
        return node
    return [finish(p) for p in patients.values()]
