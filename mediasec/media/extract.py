"""Extract: decrypted plain DICOM files out of a medium, valid ones only, in a tidy layout.

``plan_extract(fsi)`` decides, before any file is read, where each file would go:

* with a usable DICOMDIR, its hierarchy: ``P0001/ST0001/SE0001_CT/IM00001.dcm`` (patients,
  studies and series numbered in DICOMDIR order, the modality in the series folder, the
  instance's position in its series) - no patient names or IDs in any path; objects at the
  root level (hanging protocols, palettes...) under ``ROOT/``; DICOM files present but not
  referenced under ``UNREFERENCED/`` (their medium path, ``/`` -> ``_``);
* without one, every file under ``FILES/`` with its medium path and ``.dcm``.

``extract_file(chunks, task, open_output=..., ...)`` reads a file **once**: the plaintext
streams into an output from ``open_output`` (the edge gives an anonymous ``O_TMPFILE``
inode) while the same checks as ``verify`` run (``examine_file`` + ``judge_file`` against
the task's record and manifest line); the output is committed only if the whole plaintext
arrived and no content check failed (or ``include_invalid``), else aborted. Non-DICOM files
are never written.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Protocol

from mediasec import __version__
from mediasec.media.dirindex import FileSetIndex, RecordRef
from mediasec.media.examine import examine_file
from mediasec.media.judge import content_ok, judge_file
from mediasec.media.validate import examine_tasks
from mediasec.report import FileResult, Finding, Outcome, worst

__all__ = ["ExtractTask", "ExtractResult", "ExtractReport", "plan_extract", "extract_file",
           "link_findings", "Output", "SCHEMA"]

SCHEMA = "mediasec.extract/1"
#: medium-level findings that mean a file was not extracted
_LOST = frozenset({"FILE_MISSING", "MANIFEST_MISSING_FILE", "PATH_ESCAPE"})
_SAFE = re.compile(r"[^A-Za-z0-9_]+")


class Output(Protocol):
    def write(self, data) -> Any: ...

    def commit(self) -> None: ...

    def abort(self) -> None: ...


@dataclass(frozen=True)
class ExtractTask:
    path: str
    size: int
    handle: Any
    out_rel: str                        # relative output path, '/'-separated
    ref: RecordRef | None = None
    manifest_sha: str | None = None
    manifest_present: bool = False
    dicomdir_usable: bool = False


@dataclass(frozen=True)
class ExtractResult:
    path: str
    output: str | None                  # relative path written, or None
    findings: tuple[Finding, ...]
    kind: str
    #: SHA-256 of the file as stored (of a plain file: of the bytes written)
    sha256: str | None = None

    @property
    def status(self) -> Outcome:
        o = worst(f.outcome for f in self.findings)
        return Outcome.PASSED if o is Outcome.INFO else o

    def to_dict(self) -> dict:
        return {"path": self.path, "status": self.status.value, "output": self.output,
                "kind": self.kind, "reasons": [f.to_dict() for f in self.findings]}


@dataclass(frozen=True)
class ExtractReport:
    output: str
    results: tuple[ExtractResult, ...]
    findings: tuple[Finding, ...] = ()

    @property
    def written(self) -> int:
        return sum(1 for r in self.results if r.output is not None)

    @property
    def lost(self) -> tuple[Finding, ...]:
        """Files that should have been extracted and were not there to read (missing,
        leaving the medium)."""
        return tuple(f for f in self.findings if f.code in _LOST)

    @property
    def outcome(self) -> Outcome:
        """From the files, and from files that should have been there (missing, escaping);
        the DICOMDIR's own problems are listed but do not fail an extraction."""
        o = worst([*(f.outcome for f in self.lost),
                   *(r.status for r in self.results)])
        return Outcome.PASSED if o is Outcome.INFO else o

    def to_dict(self) -> dict:
        # written + skipped + failed == files; "invalid": failed checks, written or not
        # (written only with include_invalid)
        invalid = [r for r in self.results if r.status is Outcome.FAILED]
        failed = [r for r in invalid if r.output is None]
        return {"schema": SCHEMA, "version": __version__, "outcome": self.outcome.value,
                "output": self.output,
                "counts": {"files": len(self.results), "written": self.written,
                           "skipped": len(self.results) - self.written - len(failed),
                           "failed": len(failed), "invalid": len(invalid)},
                "findings": [f.to_dict() for f in self.findings],
                "files": [r.to_dict() for r in self.results]}


def _part(text: str | None, width: int = 16) -> str:
    return _SAFE.sub("", (text or "").upper())[:width]


def plan_extract(fsi: FileSetIndex) -> list[ExtractTask]:
    """Where each openable file would go (see the module docstring)."""
    entries = {e.path: e for e in fsi.index.entries if e.kind == "file"}
    manifest = fsi.manifest
    tasks: list[ExtractTask] = []
    placed: set[str] = set()

    def task(path: str, out_rel: str) -> None:
        e = entries[path]
        placed.add(path)
        tasks.append(ExtractTask(path, e.size, e.handle, out_rel, fsi.refs.get(path),
                                 manifest.get(path) if manifest else None,
                                 manifest is not None, fsi.usable))

    if fsi.usable:
        p_n = 0
        root_n = 0
        for p in fsi.tree:
            if p.get("type") != "PATIENT":
                if p.get("path") in entries and p["path"] not in placed:
                    root_n += 1
                    task(p["path"], f"ROOT/{_part(p.get('type'), 12) or 'OBJECT'}_"
                                    f"{root_n:05d}.dcm")
                continue
            p_n += 1
            st_n = 0
            for st in p.get("children", ()):
                st_n += 1
                se_n = 0
                for se in st.get("children", ()):
                    se_n += 1
                    mod = _part(se.get("modality"), 8)
                    folder = (f"P{p_n:04d}/ST{st_n:04d}/SE{se_n:04d}"
                              + (f"_{mod}" if mod else ""))
                    i_n = 0
                    for leaf in se.get("children", ()):
                        if leaf.get("path") in entries and leaf["path"] not in placed:
                            i_n += 1
                            task(leaf["path"], f"{folder}/IM{i_n:05d}.dcm")
    skip = {getattr(fsi.dicomdir_entry, "path", None), getattr(fsi.manifest_entry, "path", None)}
    rest = "UNREFERENCED" if fsi.usable else "FILES"
    for t in examine_tasks(fsi):
        if t.path in placed or t.path in skip:
            continue
        flat = "_".join(_SAFE.sub("_", c) for c in t.path.split("/")) if fsi.usable else \
            "/".join(_SAFE.sub("_", c) for c in t.path.split("/"))
        task(t.path, f"{rest}/{flat}.dcm")
    return tasks


def extract_file(chunks: Iterable[bytes], task: ExtractTask, *,
                 open_output: Callable[[str], Output], decrypters=(), trust=None,
                 include_invalid: bool = False, profile=None) -> ExtractResult:
    """Read, check and (if valid) commit one file; see the module docstring."""
    out = open_output(task.out_rel)
    committed = False
    try:
        facts = examine_file(chunks, path=task.path, size=task.size, decrypters=decrypters,
                             trust=trust, sink=out.write)
        manifest = ({task.path: task.manifest_sha} if task.manifest_sha
                    else ({} if task.manifest_present else None))
        findings = judge_file(facts, entry=None, ref=task.ref, manifest=manifest,
                              dicomdir_usable=task.dicomdir_usable, profile=profile)
        if facts.kind not in ("plain", "secure"):
            return ExtractResult(task.path, None, findings + (Finding(
                "EXTRACT_NOT_DICOM", Outcome.INFO, "not a DICOM file: not extracted"),),
                facts.kind)
        if not facts.decrypted:
            return ExtractResult(task.path, None, findings + (Finding(
                "EXTRACT_SKIPPED", Outcome.INFO, "could not be decrypted: not extracted"),),
                facts.kind)
        if not content_ok(findings) and not include_invalid:
            return ExtractResult(task.path, None, findings + (Finding(
                "EXTRACT_SKIPPED", Outcome.INFO, "failed its checks: not extracted "
                "(--include-invalid writes it anyway)"),), facts.kind)
        out.commit()
        committed = True
        return ExtractResult(task.path, task.out_rel, findings, facts.kind,
                             facts.sha256)
    finally:
        if not committed:
            out.abort()


def link_findings(fsi: FileSetIndex) -> list[Finding]:
    """Symbolic links on the medium, never followed and so never extracted: one leaving the
    medium fails the extraction (``PATH_ESCAPE``, as in ``verify``), one inside it warns."""
    out = []
    for e in fsi.index.entries:
        if e.kind == "escape":
            out.append(Finding("PATH_ESCAPE", Outcome.FAILED, f"{e.path}: a symbolic link "
                               "that leads outside the medium: not followed, not extracted"))
        elif e.kind == "link":
            out.append(Finding("PATH_SYMLINK", Outcome.WARNING, f"{e.path}: a symbolic link "
                               "on the medium: not followed, not extracted"))
    return out


def failed_result(task: ExtractTask, finding: Finding) -> ExtractResult:
    return ExtractResult(task.path, None, (finding,), "unreadable")


def medium_results(fsi: FileSetIndex) -> list[FileResult]:
    """Findings of the index step worth listing in an extract report (DICOMDIR, missing)."""
    out = []
    if fsi.dicomdir_result is not None and fsi.dicomdir_result.findings:
        out.append(fsi.dicomdir_result)
    for path, fs in sorted(fsi.missing.items()):
        if path not in fsi.refs:
            out.append(FileResult(path, tuple(fs), {"kind": "missing"}))
    return out
