"""Validate a received medium: ``MediumSource`` -> frozen ``MediaReport``.

The domain never touches the OS. The edge (``mediasec.io.medium``) hands in a
``MediumSource``: a listing of every regular file with its size (paths relative to the
root, ``/``-separated, ISO 9660 ``;1`` and the trailing ``.`` already removed), a way to
stream a listed file as chunks, and picklable handles so that worker processes can reopen
the same files. Everything else happens here, in three steps:

1. **Index** (this process, one read each): the root ``DICOMDIR`` (found case-insensitively;
   a Secure DICOM File is opened with the caller's decrypters first - offsets refer to the
   decrypted bytes), decoded within bounds with ``decode_dicomdir(lenient=True)`` (dangling
   offsets, cycles and excess depth are findings, never loops); every record's Referenced
   File ID is checked for containment *before* it is resolved (``..``, ``.``, absolute,
   drive letters, empty components: ``PATH_ESCAPE``, never followed), then resolved
   tolerantly against the listing (case, ``;1``, a trailing ``.``, an extension: reported).
   ``MANIFEST.SHA`` is parsed when present.
2. **Examine** (``examine_file``, in worker processes or in this one): each listed file is
   read **once**, as chunks: the stored bytes are SHA-256 hashed for the manifest on the
   way through, a Secure DICOM File is decrypted and its digest/signatures/trust checked by
   ``open_secure_file`` while the first ``HEADER_BOUND`` bytes of plaintext are kept for a
   header parse (``dicom.scan``); a plain file keeps its first ``HEADER_BOUND`` bytes. Only
   small ``FileFacts`` come back; plaintext goes nowhere unless the caller passed a sink
   (``extract``).
3. **Judge** (``judge_file``, pure): facts + the record that references the file + the
   manifest line -> findings; then File-set wide checks (mixed plain/secure, plaintext
   DICOMDIR, recipients that vary, unreferenced files, the manifest's missing entries).

**Header bound.** DICOM headers are small, and only elements up to (0020,0013) are needed;
``HEADER_BOUND`` (64 KiB) of plaintext is kept per file. A header that does not end inside
it (a huge private sequence before the keys) is reported as ``DICOM_HEADER_TOO_LONG``
(indeterminate: the record cross-check was not done), never as damage.

**Outcomes.** FAILED findings make the run fail (exit 1); WARNING, INFO and INDETERMINATE
(e.g. "encrypted, not checked" without a key) do not. Messages name files, record types and
element names, never patient names or IDs.
"""

from __future__ import annotations

from typing import Callable, Iterator

from mediasec._data import MediaProfile
from mediasec.media.dirindex import FileSetIndex, index_medium
from mediasec.media.examine import ExamineTask, FileFacts, examine_file
from mediasec.media.judge import judge_file
from mediasec.media.source import MediumSource
from mediasec.media.verify_report import MediaReport, _PHI_KEYS, summarize_tree, tree_from_facts
from mediasec.errors import InternalError
from mediasec.policy import TrustContext
from mediasec.report import FileResult, Finding, Outcome

__all__ = ["local_examiner", "examine_tasks", "validate_medium", "finish_validation"]


# -- the driver ------------------------------------------------------------------------------

Examiner = Callable[[list[ExamineTask]], Iterator[FileFacts]]


def local_examiner(source: MediumSource, *, decrypters=(), trust=None) -> Examiner:
    """Examine in this process, in order (``workers=1``)."""
    def run(tasks: list[ExamineTask]) -> Iterator[FileFacts]:
        for t in tasks:
            yield examine_file(source.open(t.handle), path=t.path, size=t.size,
                               decrypters=decrypters, trust=trust)
    return run


def examine_tasks(fsi: FileSetIndex) -> list[ExamineTask]:
    """Every openable listed file except the DICOMDIR and the manifest (already read)."""
    skip = {id(fsi.dicomdir_entry), id(fsi.manifest_entry)}
    return [ExamineTask(e.path, e.size, e.handle) for e in fsi.index.entries
            if e.kind == "file" and id(e) not in skip]


def validate_medium(source: MediumSource, *, decrypters=(), trust: TrustContext | None = None,
                    examiner: Examiner | None = None, profile: MediaProfile | None = None,
                    on_progress: Callable[[dict], None] | None = None) -> MediaReport:
    """Index, examine every file once, judge; see the module docstring."""
    decrypters = list(decrypters)
    fsi = index_medium(source, decrypters=decrypters, trust=trust)
    return finish_validation(source, fsi, decrypters=decrypters, trust=trust,
                             examiner=examiner, profile=profile, on_progress=on_progress)


def finish_validation(source: MediumSource, fsi: FileSetIndex, *, decrypters=(), trust=None,
                      examiner: Examiner | None = None, profile: MediaProfile | None = None,
                      on_progress: Callable[[dict], None] | None = None) -> MediaReport:
    if examiner is None:
        examiner = local_examiner(source, decrypters=decrypters, trust=trust)
    iso = source.volume_id is not None
    tasks = examine_tasks(fsi)
    examined = 0
    total_bytes = sum(t.size for t in tasks)
    results: list[FileResult] = []
    if fsi.dicomdir_result is not None:
        results.append(fsi.dicomdir_result)
    entry_of = {e.path: e for e in fsi.index.entries}
    kinds: dict[str, int] = {}
    recipients: set = set()
    signer_sets: set = set()
    header_facts: list[FileFacts] = []
    done = 0
    seen_ref_paths: set[str] = set()
    for facts in examiner(tasks):
        # an examiner started early (``planned_tasks``) must have read exactly these files
        if examined >= len(tasks) or facts.path != tasks[examined].path:
            raise InternalError(f"the examined files differ from the plan at "
                                f"{facts.path!r}")
        examined += 1
        done += facts.size
        if on_progress is not None:
            on_progress({"event": "progress", "done_bytes": done, "total_bytes": total_bytes,
                         "file": facts.path})
        entry = entry_of.get(facts.path)
        ref = fsi.refs.get(facts.path)
        if ref is not None:
            seen_ref_paths.add(facts.path)
        findings = judge_file(facts, entry=entry, ref=ref, manifest=fsi.manifest,
                              dicomdir_usable=fsi.usable, profile=profile, iso=iso)
        findings += tuple(fsi.missing.pop(facts.path, ()))
        kinds[facts.kind] = kinds.get(facts.kind, 0) + 1
        if facts.kind == "secure" and facts.envelope is not None:
            recipients.add(_recipient_key(facts.envelope))
            signer_sets.add(facts.signers)
        if not fsi.usable and facts.header is not None:
            header_facts.append(FileFacts(facts.path, facts.size, facts.kind,
                                          header=facts.header))
        info: dict = {"kind": facts.kind, "size": facts.size}
        if facts.sha256:
            info["sha256"] = facts.sha256
        if ref is not None:
            info["record_type"] = ref.record_type
            info["file_id"] = ref.file_id
        if facts.header is not None:
            info["sop_instance_uid"] = facts.header.sop_instance_uid
            info["transfer_syntax"] = facts.header.transfer_syntax
        results.append(FileResult(facts.path, findings, info))
    if examined != len(tasks):
        raise InternalError(f"{len(tasks) - examined} planned files were not examined")
    # escapes (never opened), then references to files that are not there
    for e in fsi.index.entries:
        if e.kind == "escape":
            results.append(FileResult(e.path, (Finding(
                "PATH_ESCAPE", Outcome.FAILED,
                "a symbolic link that leads outside the medium: not followed"),
                *fsi.missing.pop(e.path, ())), {"kind": "escape"}))
        elif e.kind == "link":
            results.append(FileResult(e.path, (Finding(
                "PATH_SYMLINK", Outcome.WARNING,
                "a symbolic link on the medium: not followed"),
                *fsi.missing.pop(e.path, ())), {"kind": "link"}))
    if fsi.manifest is not None:
        for p in sorted(fsi.manifest_unresolved):
            fsi.missing.setdefault(p, []).append(Finding(
                "MANIFEST_MISSING_FILE", Outcome.FAILED,
                "listed in MANIFEST.SHA but not on the medium"))
    for path, fs in sorted(fsi.missing.items()):
        if path == getattr(fsi.manifest_entry, "path", None):
            results.append(FileResult(path, tuple(fs), {"kind": "manifest",
                                                        "sha256": fsi.manifest_sha}))
        else:
            results.append(FileResult(path, tuple(fs), {"kind": "missing"}))
    medium_findings = list(fsi.medium_findings)
    if fsi.manifest_entry is not None and not any(r.path == fsi.manifest_entry.path
                                                  for r in results):
        results.append(FileResult(fsi.manifest_entry.path, (), {"kind": "manifest",
                                                                "sha256": fsi.manifest_sha}))
    # File-set wide
    secure_n = kinds.get("secure", 0)
    plain_n = kinds.get("plain", 0)
    if secure_n and plain_n:
        medium_findings.append(Finding("FS_MIXED", Outcome.FAILED,
                                       f"{plain_n} plain and {secure_n} Secure DICOM Files on "
                                       "one medium"))
    dir_kind = fsi.dicomdir_facts.kind if fsi.dicomdir_facts is not None else None
    if dir_kind == "plain" and (secure_n or (profile is not None and profile.secure)):
        medium_findings.append(Finding("FS_DICOMDIR_PLAINTEXT", Outcome.FAILED,
                                       "Secure DICOM Files (or a secure profile) with a plain "
                                       "DICOMDIR"))
    if dir_kind == "secure" and plain_n:
        medium_findings.append(Finding("FS_DICOMDIR_PLAINTEXT", Outcome.FAILED,
                                       f"a secure DICOMDIR, but {plain_n} DICOM files are "
                                       "plain"))
    if profile is not None and profile.secure is False and secure_n:
        medium_findings.append(Finding("PROFILE_SECURE", Outcome.FAILED,
                                       f"{profile.id} has no security parameters, but the "
                                       "medium holds Secure DICOM Files"))
    if len(recipients) > 1 or len(signer_sets) > 1:
        medium_findings.append(Finding("FS_RECIPIENTS_VARY", Outcome.INFO,
                                       f"{len(recipients)} recipient sets and "
                                       f"{len(signer_sets)} signer sets among the files "
                                       "(allowed)"))
    fileset_id = fsi.directory.fileset_id if fsi.directory is not None else None
    if iso and fsi.directory is not None and (source.volume_id or "") != (fileset_id or ""):
        medium_findings.append(Finding("ISO_VOLID", Outcome.WARNING,
                                       f"Volume Identifier {source.volume_id!r} differs from "
                                       f"the File-set ID {fileset_id!r} (PS3.12 F)"))
    if fsi.dicomdir_secure and not decrypters:
        medium_findings.append(Finding("CMS_ENCRYPTED_NOT_CHECKED", Outcome.INDETERMINATE,
                                       "the DICOMDIR is encrypted and no key was given: "
                                       "records, references and file contents not checked"))
    tree = fsi.tree if fsi.usable else tree_from_facts(header_facts)
    medium = {"path": source.label, "kind": source.description,
              "volume_id": source.volume_id, "fileset_id": fileset_id,
              "fileset_uid": fsi.directory.fileset_uid if fsi.directory is not None else None,
              "dicomdir": getattr(fsi.dicomdir_entry, "path", None),
              "dicomdir_format": dir_kind, "records": (fsi.directory.record_count
                                                       if fsi.directory is not None else None),
              "manifest": fsi.manifest is not None,
              "profile": profile.id if profile is not None else None,
              "summary": _public_summary(summarize_tree(tree))}
    return MediaReport(medium, tuple(medium_findings), tuple(results), tuple(tree))


def _public_summary(summary: list[dict]) -> list[dict]:
    return [{k: v for k, v in p.items() if k not in _PHI_KEYS} for p in summary]


def _recipient_key(env: dict) -> tuple:
    out = []
    for r in env.get("recipients", []):
        out.append(tuple(sorted((k, str(v)) for k, v in r.items())))
    return tuple(sorted(out))
