"""Build a File-set, first steps: scan inputs, index, plan (``media.jobs`` runs the job).

The domain never touches the file system: the edge hands in

* ``inputs``: ``(source, size)`` pairs (sources are opaque strings, e.g. paths);
* ``opener(source) -> BinaryIO``;
* ``resolve(dicomdir_source, file_id) -> (source, size) | None`` to follow the records of
  a DICOMDIR found among the inputs (read as a File-set).

Every refusal (transfer syntax, duplicates, Type 1 keys) happens in ``plan_build``, before
any output exists; ``media.jobs.run_build`` then writes each output byte once.
"""

from __future__ import annotations

import functools
import hashlib
from dataclasses import dataclass, field
from typing import BinaryIO, Callable, Iterable

from mediasec import __version__
from mediasec._data import MediaProfile
from mediasec._job import collector_paused
from mediasec.dicom.dicomdir import decode_dicomdir
from mediasec.dicom.fileid import FileId
from mediasec.dicom.scan import ScannedFile, scan_file
from mediasec.dicom.tags import REF_FILE_ID
from mediasec.errors import InputError, NotDicomError
from mediasec.media.fileset import Skipped, index_fileset, narrow_tags, wanted_tags
from mediasec.media.plan import MediumPlan, check_transfer_syntaxes, plan_medium
from mediasec.media.stages import FileStages

__all__ = ["ScanResult", "PlanReport", "scan_inputs", "plan_build",
           "release_scan_values", "same_content", "MAX_DICOMDIR_BYTES"]

MAX_DICOMDIR_BYTES = 256 << 20
Opener = Callable[[str], BinaryIO]
Resolver = Callable[[str, FileId], "tuple[str, int] | None"]
Progress = Callable[[dict], None]
Mapper = Callable[[Callable, list], Iterable]


@dataclass(frozen=True)
class ScanResult:
    scans: tuple[ScannedFile, ...]
    skipped: tuple[Skipped, ...]
    input_filesets: tuple[dict, ...] = ()


@dataclass(frozen=True)
class PlanReport:
    """One plan as the ``mediasec.build/1`` fields (counts, outputs, DICOMDIR tree...)."""

    plan: MediumPlan
    scan: ScanResult
    output: str | None = None
    written: bool = False
    warnings: tuple[tuple[str, str], ...] = field(default=())

    def to_dict(self) -> dict:
        plan, model = self.plan, self.plan.model
        skipped = [*self.scan.skipped, *model.skipped]
        instances = [f for f in plan.files if f.role == "instance"]
        return {
            "schema": "mediasec.build/1",
            "version": __version__,
            "outcome": "passed",
            "output": self.output,
            "written": self.written,
            "profile": plan.profile.id,
            "fileset_id": plan.fileset_id,
            "fileset_uid": plan.fileset_uid,
            "counts": {"inputs": len(self.scan.scans) + len(self.scan.skipped),
                       "instances": len(instances), "files_written": len(plan.files),
                       "converted": len(plan.converted), "skipped": len(skipped),
                       "duplicates": len(model.duplicates), "made_up": len(model.made_up),
                       "bytes": plan.total_bytes},
            "outputs": [f.to_dict() for f in plan.files],
            "dicomdir": {"file_id": "DICOMDIR", "size": plan.dicomdir.size,
                         "records": plan.tree()},
            "converted": list(plan.converted),
            "skipped": [s.to_dict() for s in skipped],
            "duplicates": [{"kept": a, "dropped": b} for a, b in model.duplicates],
            "made_up": [m.to_dict() for m in model.made_up],
            "input_filesets": list(self.scan.input_filesets),
            "warnings": [{"code": c, "message": m}
                         for c, m in (*self.warnings, *model.warnings)],
        }


def same_content(opener: Opener) -> Callable[[ScannedFile, ScannedFile], bool]:
    """Duplicate test: equal size, then equal SHA-256 (computed lazily, once per file)."""
    cache: dict[str, bytes] = {}

    def digest(source: str) -> bytes:
        if source not in cache:
            h = hashlib.sha256()
            with opener(source) as f:
                for chunk in iter(lambda: f.read(1 << 20), b""):
                    h.update(chunk)
            cache[source] = h.digest()
        return cache[source]

    def same(a: ScannedFile, b: ScannedFile) -> bool:
        return a.size == b.size and digest(a.source) == digest(b.source)
    return same


def _without_cycle_collector(fn):
    """Run ``fn`` with Python's cycle collector paused (``mediasec._job``: counted, so two
    jobs in two threads do not switch it back on under each other).

    Scanning and planning build tens of thousands of small acyclic objects; each automatic
    generation-2 collection walks all of them, which made planning grow faster than linearly
    with the pile (x15 for 8x the files). Reference counting still frees everything.
    """
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        with collector_paused():
            return fn(*args, **kwargs)
    return wrapper


def _scanner(opener: Opener, tags, narrow) -> Callable[[tuple[str, int]], object]:
    """One input's scan: its ``ScannedFile``, or why it is skipped (``Skipped``)."""
    def scan(item: tuple[str, int]) -> ScannedFile | Skipped:
        source, size = item
        try:
            with opener(source) as f:
                return scan_file(f, size, source=source, tags=tags, narrow=narrow)
        except NotDicomError as exc:
            return Skipped(source, "SKIP_NOT_DICOM", exc.message)
        except InputError as exc:
            return Skipped(source, exc.code, f"damaged DICOM file: {exc.message}")
    return scan


@_without_cycle_collector
def scan_inputs(inputs: Iterable[tuple[str, int]], *, profile: MediaProfile, opener: Opener,
                resolve: Resolver | None = None, on_progress: Progress | None = None,
                mapper: Mapper | None = None) -> ScanResult:
    """Scan each input header once; non-DICOM files are skipped and listed. A DICOMDIR among
    the inputs is read as a File-set: files it references are added to the inputs.

    ``mapper(fn, items)`` (from the edge: worker processes) yields ``fn(item)`` for every
    item in order; the inputs given are scanned through it, the files a DICOMDIR adds here.
    """
    tags = wanted_tags(profile)
    narrow = narrow_tags(profile)
    scan = _scanner(opener, tags, narrow)
    queue = list(inputs)
    seen = {src for src, _ in queue}
    scans: list[ScannedFile] = []
    skipped: list[Skipped] = []
    filesets: list[dict] = []
    first = len(queue)
    ahead = iter(mapper(scan, queue)) if mapper is not None and first > 1 else None
    i = 0
    while i < len(queue):
        source, size = queue[i]
        i += 1
        s = next(ahead) if ahead is not None and i <= first else scan((source, size))
        if isinstance(s, Skipped):
            skipped.append(s)
            continue
        if on_progress is not None:
            on_progress({"event": "scan", "done_files": i, "total_files": len(queue),
                         "file": source})
        if not s.is_directory:
            scans.append(s)
            continue
        info = {"path": source, "records": 0, "referenced": 0, "added": 0, "missing": []}
        try:
            if size > MAX_DICOMDIR_BYTES:
                raise InputError("DICOMDIR larger than 256 MiB", code="DIR_TOO_LARGE")
            with opener(source) as f:
                data = f.read(size)
            directory = decode_dicomdir(data, path=source)
        except InputError as exc:
            skipped.append(Skipped(source, exc.code, f"input DICOMDIR unusable "
                                                     f"({exc.message}); its folder is scanned"))
            continue
        info["records"] = directory.record_count
        info["findings"] = [{"code": c, "message": m} for c, m in directory.findings]
        for rec in directory.walk():
            try:
                fid = rec.file_id
            except InputError as exc:
                info["missing"].append({"file_id": rec.text(REF_FILE_ID), "reason": exc.message})
                continue
            if fid is None:
                continue
            info["referenced"] += 1
            hit = resolve(source, fid) if resolve is not None else None
            if hit is None:
                info["missing"].append({"file_id": "/".join(fid), "reason": "not found"})
                continue
            if hit[0] not in seen:
                seen.add(hit[0])
                queue.append(hit)
                info["added"] += 1
        filesets.append(info)
        skipped.append(Skipped(source, "SKIP_INPUT_DICOMDIR",
                               f"DICOMDIR of an input File-set: read, {info['referenced']} "
                               "referenced files; a new one is written"))
    return ScanResult(tuple(scans), tuple(skipped), tuple(filesets))


@_without_cycle_collector
def plan_build(scan: ScanResult, *, profile: MediaProfile, opener: Opener, fileset_uid: str,
               fileset_id: str = "", fill_missing: bool = False,
               stages: FileStages | None = None) -> MediumPlan:
    """Every check and decision, before any output exists."""
    if not scan.scans:
        first = scan.skipped[0].source if scan.skipped else None
        raise InputError("no DICOM files in the input", path=first, code="INPUT_NO_DICOM")
    check_transfer_syntaxes(list(scan.scans), profile)
    model = index_fileset(scan.scans, profile=profile, fill_missing=fill_missing,
                          same_content=same_content(opener))
    return plan_medium(model, profile=profile, fileset_uid=fileset_uid, fileset_id=fileset_id,
                       opener=opener, stages=stages)


def release_scan_values(scan: ScanResult) -> None:
    """Free the header values a scan collected, once every plan is made.

    The values a medium needs live on in the plan's records and model keys; the scan kept
    every wanted tag of every file (~6 KB each), which is most of the memory a large job
    holds while it writes. After this call the scan cannot be planned again.
    """
    for s in scan.scans:
        s.values.clear()
