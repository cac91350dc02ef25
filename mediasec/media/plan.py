"""``MediumPlan``: every output file with its File ID, its producer and its exact size,
plus the encoded DICOMDIR - all decided before the first byte is written.

A *producer* makes one output file's bytes: ``size`` is exact and known up front, and
``chunks()`` yields exactly that many bytes (checked by ``write_producer``). Every DICOM
file of the medium, the DICOMDIR included, is a ``media.stages.FilePipeline``: the job's
declared stages (read -> transcode -> de-identify -> sign dataset -> protect -> hash),
prepared once per file with exact sizes. A secure profile without a protect stage is a
``UsageError``. Non-DICOM content (PDI pages) is a ``BytesProducer``.

The DICOMDIR is encoded from the *plaintext* records (offsets refer to the decrypted
DICOMDIR for a secure File-set; 1510/1511/1512 describe the inner file).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import BinaryIO, Callable, Iterator, Protocol, runtime_checkable

from mediasec._data import MediaProfile, media_profiles, transfer_syntax_name
from mediasec.dicom.dicomdir import DirRecord, encode_dicomdir
from mediasec.dicom.fileid import DICOMDIR, FileId, FileIdAllocator, validate_file_id
from mediasec.dicom.part10 import CHUNK, CONVERTIBLE
from mediasec.dicom.scan import TS_EXPLICIT_LE, ScannedFile, is_uid
from mediasec.dicom.tags import SERIES_INSTANCE_UID, STUDY_INSTANCE_UID
from mediasec.errors import InputError, InternalError, UsageError
from mediasec.media.fileset import FileSetModel, Instance
from mediasec.media.stages import FileItem, FileStages, ReadStage

__all__ = ["Producer", "BytesProducer", "write_producer",
           "PlannedFile", "MediumPlan", "plan_medium", "check_transfer_syntaxes",
           "suggest_profile"]

Opener = Callable[[str], BinaryIO]


@runtime_checkable
class Producer(Protocol):
    """Makes one output file: exactly ``size`` bytes from ``chunks()``.

    **The byte-path contract** (the one rule for every chunk iterator in mediasec: these
    producers and their wrappers, ``SecureFileProducer.chunks``, the file pipelines,
    ``ChunkReader``, ``ByteStream``, ``decrypt_chunks``/``iter_octets``, and the readers of
    a received medium, ``MediumSource.open``): **a yielded chunk is valid only until the
    next chunk is requested.** Producers may yield views of buffers they reuse (the CMS
    producer encrypts through two reused buffers; the medium readers read into reused
    buffers), so a consumer must use or
    copy a chunk *before* it advances the iterator - never keep a view, a slice or a
    ``memoryview`` of it across ``next()`` (``bytes``, ``bytearray`` slices, ``b"".join``
    of views made *after* advancing all break it). A source that happens to give more
    (two alternating buffers) does not widen the contract. ``tests/_poison.py`` scribbles
    over every chunk as soon as the next one is requested; ``tests/test_bytepath.py``
    runs every consumer through it.
    """

    kind: str

    @property
    def size(self) -> int: ...

    def chunks(self) -> Iterator[bytes]: ...


@dataclass(frozen=True)
class BytesProducer:
    data: bytes = field(repr=False)
    kind: str = "bytes"
    source: str | None = None

    @property
    def size(self) -> int:
        return len(self.data)

    def chunks(self) -> Iterator[bytes]:
        for i in range(0, len(self.data), CHUNK):
            yield self.data[i:i + CHUNK]


def write_producer(producer: Producer, out: BinaryIO,
                   on_bytes: Callable[[int], None] | None = None) -> int:
    """Stream ``producer`` into ``out``; a byte count off the plan is an ``InternalError``."""
    done = 0
    expected = producer.size
    for chunk in producer.chunks():
        done += len(chunk)
        if done > expected:
            raise InternalError(f"{getattr(producer, 'source', None) or producer.kind}: "
                                f"producer wrote more than the planned {expected} bytes")
        out.write(chunk)
        if on_bytes is not None:
            on_bytes(len(chunk))
    if done != expected:
        raise InternalError(f"{getattr(producer, 'source', None) or producer.kind}: producer "
                            f"wrote {done} bytes, planned {expected}")
    return done


@dataclass(frozen=True)
class PlannedFile:
    file_id: FileId
    producer: Producer = field(repr=False)
    role: str                          # "dicomdir" | "instance"
    source: str | None = None
    sop_class_uid: str | None = None
    sop_instance_uid: str | None = None
    transfer_syntax: str | None = None  # of the written (inner) file
    record_type: str | None = None

    @property
    def size(self) -> int:
        return self.producer.size

    def to_dict(self) -> dict:
        d = {"file_id": "/".join(self.file_id), "role": self.role, "size": self.size,
             "producer": self.producer.kind}
        if self.source is not None:
            d["source"] = self.source
        if self.record_type:
            d["record_type"] = self.record_type
            d["sop_instance_uid"] = self.sop_instance_uid
            d["transfer_syntax"] = self.transfer_syntax
        return d


@dataclass(frozen=True)
class MediumPlan:
    profile: MediaProfile
    fileset_id: str
    fileset_uid: str
    files: tuple[PlannedFile, ...]
    directory: tuple[DirRecord, ...] = field(repr=False)
    model: FileSetModel = field(repr=False)
    converted: tuple[dict, ...] = ()

    @property
    def total_bytes(self) -> int:
        return sum(f.size for f in self.files)

    @property
    def dicomdir(self) -> PlannedFile:
        return next(f for f in self.files if f.role == "dicomdir")

    def tree(self) -> list[dict]:
        """The DICOMDIR hierarchy for reports: types, File IDs and UIDs (no names/IDs)."""
        def node(r: DirRecord) -> dict:
            d: dict = {"type": r.type}
            if r.file_id is not None:
                d["file_id"] = "/".join(r.file_id)
                d["sop_class_uid"] = r.sop_class_uid
                d["sop_instance_uid"] = r.sop_instance_uid
            for tag, name in ((STUDY_INSTANCE_UID, "study_uid"),
                              (SERIES_INSTANCE_UID, "series_uid")):
                hit = next((v for t, _, v in r.keys if t == tag), None)
                if hit is not None:
                    d[name] = hit.decode("ascii").rstrip("\0 ")
            if r.children:
                d["children"] = [node(c) for c in r.children]
            return d
        return [node(r) for r in self.directory]


def suggest_profile(transfer_syntaxes: set[str], current: MediaProfile) -> MediaProfile | None:
    """A profile allowing every syntax in ``transfer_syntaxes``: same family and security
    first, then any non-secure one with the same security setting."""
    candidates = [p for p in media_profiles().values()
                  if p.secure == current.secure
                  and all(p.allows(ts) or ts in CONVERTIBLE for ts in transfer_syntaxes)]
    if not candidates:
        return None
    order = {"usb": 0, "dvd": 1, "bd": 2, "cd": 3, "dvd-ram": 4}
    return min(candidates, key=lambda p: (p.family != current.family,
                                          order.get(p.family, 9)))


def check_transfer_syntaxes(scans: list[ScannedFile], profile: MediaProfile) -> None:
    """Refuse syntaxes the profile forbids (listing the files, suggesting a profile)."""
    refused: dict[str, list[str]] = {}
    for s in scans:
        ts = s.transfer_syntax
        if profile.allows(ts) or (ts in CONVERTIBLE and profile.allows(TS_EXPLICIT_LE)):
            continue
        refused.setdefault(ts, []).append(s.source)
    if not refused:
        return
    files = sorted(f for fs in refused.values() for f in fs)
    names = ", ".join(f"{transfer_syntax_name(ts)} ({len(fs)} file{'s' * (len(fs) > 1)})"
                      for ts, fs in sorted(refused.items()))
    listed = ", ".join(files[:5]) + (f" and {len(files) - 5} more" if len(files) > 5 else "")
    better = suggest_profile(set(refused), profile)
    hint = (f"profile {better.id} allows them" if better is not None
            else "no general-purpose profile allows them")
    err = InputError(f"{profile.id} does not allow {names}: {listed}", path=files[0],
                     code="PROFILE_TS_REFUSED", hint=hint)
    err.files = files
    raise err


def _record(inst: Instance, file_id: FileId, written_ts: str) -> DirRecord:
    return DirRecord(inst.record_type, inst.keys, (), file_id, inst.scanned.sop_class_uid,
                     inst.scanned.sop_instance_uid, written_ts)


def plan_medium(model: FileSetModel, *, profile: MediaProfile, fileset_uid: str,
                fileset_id: str = "", opener: Opener, stages: FileStages | None = None,
                pipelines: dict | None = None) -> MediumPlan:
    """Allocate File IDs, prepare each file's stages, encode the DICOMDIR and check
    capacity. ``pipelines`` (source -> FilePipeline) keeps the instances' prepared stages
    across the media of one job: a file spanned onto a disc is not prepared again."""
    stages = stages or FileStages(read=ReadStage(opener))
    pipelines = {} if pipelines is None else pipelines
    if profile.secure and stages.protect is None:
        raise UsageError(f"{profile.id} is a secure profile: secure profiles need "
                         "--encrypt-to or --password-env", code="USAGE_SECURE_NEEDS_RECIPIENT")
    if fileset_id:
        if len(fileset_id) > 16 or any(c not in "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_"
                                       for c in fileset_id):
            raise UsageError(f"File-set ID {fileset_id!r} must be 0-16 characters of "
                             "A-Z 0-9 _ (PS3.3 F.3.2.1)", code="USAGE_FILESET_ID")
    if not is_uid(fileset_uid) or len(fileset_uid) > 60:  # room for a ".N" of a span
        raise UsageError("File-set UID must be a UID of digits and dots, at most 60 "
                         "characters (PS3.5 §9.1)", code="USAGE_FILESET_UID")
    alloc = FileIdAllocator()
    files: list[PlannedFile] = []
    converted: list[dict] = []

    def place(inst: Instance, file_id: FileId) -> DirRecord:
        s = inst.scanned
        producer = pipelines.get(s.source)
        if producer is None:
            producer = pipelines[s.source] = stages.pipeline(
                FileItem("instance", s.source, s, size=s.size))
        if s.transfer_syntax in CONVERTIBLE:
            ts = TS_EXPLICIT_LE
            converted.append({"source": s.source, "file_id": "/".join(file_id),
                              "from": s.transfer_syntax, "to": ts,
                              "from_name": transfer_syntax_name(s.transfer_syntax),
                              "size_before": s.size, "size_after": producer.plain_size})
        else:
            ts = s.transfer_syntax
        files.append(PlannedFile(validate_file_id(file_id), producer, "instance", s.source,
                                 s.sop_class_uid, s.sop_instance_uid, ts, inst.record_type))
        return _record(inst, file_id, ts)

    records: list[DirRecord] = []
    for p in model.patients:
        p_id = alloc.patient()
        studies = []
        for st in p.children:
            st_id = alloc.study(p_id)
            series = []
            for se in st.children:
                se_id = alloc.series(st_id)
                leaves = tuple(place(inst, alloc.instance(se_id)) for inst in se.children)
                series.append(DirRecord("SERIES", se.keys, leaves))
            studies.append(DirRecord("STUDY", st.keys, tuple(series)))
        records.append(DirRecord("PATIENT", p.keys, tuple(studies)))
    for inst in model.root_objects:
        records.append(place(inst, alloc.root_object()))
    if not files:
        raise InputError("no DICOM instance to put on the medium", code="FILESET_EMPTY")

    dicomdir = encode_dicomdir(records, fileset_uid=fileset_uid, fileset_id=fileset_id)
    files.insert(0, PlannedFile((DICOMDIR,),
                                stages.pipeline(FileItem("dicomdir", data=dicomdir,
                                                         size=len(dicomdir))),
                                "dicomdir", sop_class_uid="1.2.840.10008.1.3.10",
                                sop_instance_uid=fileset_uid, transfer_syntax=TS_EXPLICIT_LE))
    plan = MediumPlan(profile, fileset_id, fileset_uid, tuple(files), tuple(records), model,
                      tuple(converted))
    if profile.max_file_bytes is not None:
        big = [f for f in files if f.size > profile.max_file_bytes]
        if big:
            raise InputError(f"{len(big)} file(s) exceed the {profile.filesystem} limit of "
                             f"{profile.max_file_bytes} bytes per file", path=big[0].source,
                             code="PLAN_FILE_TOO_LARGE")
    if profile.capacity_bytes is not None and plan.total_bytes > profile.capacity_bytes:
        raise InputError(f"{plan.total_bytes} bytes do not fit on one {profile.medium} "
                         f"({profile.capacity_bytes} bytes); split the input into several "
                         "File-sets", code="PLAN_CAPACITY")
    return plan
