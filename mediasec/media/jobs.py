"""The build job: request in, result out; every decision of a disc build lives here.

``run_build(request, ports, on_progress=...)`` is the one build path: ``mediasec.build``
(the Python API) and ``mediasec build`` (the command line) both end here. It

1. chooses and checks the profile (secure or not, image or folder, recipients);
2. collects and scans the inputs (``ports.collect``, ``scan_inputs``);
3. plans the whole job once: the File-set model, each file's stages and exact size, the
   spanning over media (study, else series, boundaries), the PDI pages and the manifest
   of each medium - every refusal happens here, before any output exists;
4. lays every medium out (``ports.open_disc``: an ISO image or a staging folder, at the
   edge), checks the exact image sizes against the capacity, then makes each file once
   (by the edge's worker processes, straight into its place), hashing it on the way out
   for the manifest;
5. commits every medium at the end, or removes them all on any failure;
6. returns a ``BuildResult`` holding the ``mediasec.build/1`` document.

The domain touches no file system: ``BuildPorts`` (implemented in ``mediasec.io.discs``)
collects inputs, opens them, checks and opens outputs and runs the workers.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import hashlib
import secrets
import uuid
from dataclasses import dataclass, field
from typing import Any, BinaryIO, Callable, ContextManager, Protocol, Sequence

from mediasec._data import MediaProfile, media_profile
from mediasec.cms.secure import ProtectOptions
from mediasec.errors import EnvironmentFailure, InputError, UsageError
from mediasec.media.build import PlanReport, ScanResult, plan_build, release_scan_values, \
    scan_inputs
from mediasec._job import collector_paused
from mediasec.media.dsign import SignDatasetStage
from mediasec.media.disc import (MANIFEST_NAME, SECTOR, Overhead, Placeholder,
                                 estimate_disc_bytes, label_data, manifest_bytes,
                                 manifest_line_size, pdi_files, split_for_media, subset_model)
from mediasec.media.plan import BytesProducer, plan_medium
from mediasec.media.readback import MODES, Expected, ReadbackCost, read_back
from mediasec.media.stages import FileStages, ProtectStage, ReadStage
from mediasec.policy import AlgorithmPolicy

__all__ = ["BuildRequest", "BuildResult", "BuildPorts", "DiscFile", "DiscLayout", "DiscWriter",
           "run_build", "preflight", "choose_profile", "utc_now", "DEFAULT_FOLDER_PROFILE",
           "DEFAULT_ISO_PROFILE"]

DEFAULT_FOLDER_PROFILE = "STD-GEN-USB-JPEG"
DEFAULT_ISO_PROFILE = "STD-GEN-CD"
Progress = Callable[[dict], None]


def utc_now() -> _dt.datetime:
    """The job's clock (tests pin it by replacing this function)."""
    return _dt.datetime.now(_dt.timezone.utc)


@dataclass(frozen=True)
class BuildRequest:
    """What to build. ``sources`` are files and folders; ``output`` ends in ``.iso`` for a
    disc image, else it names a folder; neither may exist.

    Protection: ``recipients`` (``KeyTransportRecipient``/``PasswordRecipient``) and
    ``signers`` (``RSASigner``) from ``mediasec.cms.keys``; with recipients the profile
    defaults to the secure one. ``rng`` yields the content keys and IVs (default: the
    ``secrets`` module), for reproducible tests only.
    """

    sources: Sequence[str]
    output: str
    profile: str | None = None
    recipients: Sequence[Any] = ()
    signers: Sequence[Any] = ()
    options: ProtectOptions = ProtectOptions()
    policy: AlgorithmPolicy = AlgorithmPolicy()
    span: bool = False
    capacity: int | None = None
    pdi: bool = False
    pdi_institution: str = ""
    pdi_contact: str = ""
    manifest: bool = True
    labels: bool = False
    fill_missing: bool = False
    fileset_id: str | None = None
    fileset_uid: str | None = None
    workers: int | None = None
    #: read-back before commit (``mediasec.media.readback``): "none", "quick" (every
    #: file's SHA-256, the manifest, and for secure media the DICOMDIR and a sample
    #: decrypted and checked) or "full" (every Secure DICOM File decrypted and checked)
    verify: str = "quick"
    rng: Callable[[int], bytes] | None = field(default=None, repr=False, compare=False)
    #: a ``mediasec.deid.files.DeidJob``: every DICOM input is de-identified first (the
    #: DICOMDIR, labels and PDI pages then hold only de-identified values)
    deidentify: Any = field(default=None, repr=False, compare=False)
    #: PS3.15 Annex C dataset signatures: every instance signed with ``dataset_signer``
    #: (an ``RSASigner``) under this profile (base|creator|authorization|sr) before CMS
    sign_datasets: str | None = None
    dataset_signer: Any = field(default=None, repr=False, compare=False)
    #: AO/AC instances become Authorized Copies (AC), signed with the authorization profile
    authorized_copy: bool = False
    #: with ``authorized_copy``: drop (and report) signatures covering the status, not refuse
    drop_covering_signatures: bool = False

    @property
    def iso(self) -> bool:
        return self.output.lower().endswith(".iso")


@dataclass(frozen=True)
class BuildResult:
    """The outcome of a build: the ``mediasec.build/1`` document and, when asked for,
    the label data (patient data: ``labels`` is only filled with ``request.labels``)."""

    document: dict = field(repr=False)
    images: tuple[str, ...]
    profile: str
    secure: bool
    labels: dict | None = field(default=None, repr=False)

    @property
    def outcome(self) -> str:
        return self.document["outcome"]

    @property
    def counts(self) -> dict:
        return self.document["counts"]

    def to_dict(self) -> dict:
        return dict(self.document)


# -- what the edge provides --------------------------------------------------------------

@dataclass(frozen=True)
class DiscFile:
    components: tuple[str, ...]
    producer: Any                  # a Producer (exact ``size``, ``chunks()``)
    role: str                      # dicomdir | instance | content | manifest

    @property
    def name(self) -> str:
        return "/".join(self.components)


@dataclass(frozen=True)
class DiscLayout:
    kind: str                      # "iso" | "folder"
    volume_id: str = ""
    udf: bool = False
    interchange_level: int = 1
    set_size: int = 1
    seqnum: int = 1
    #: the medium is read back before commit (an image may then be parsed early)
    readback: bool = True


class DiscWriter(Protocol):
    """One medium being made at the edge. ``size`` is exact before writing (an image's
    layout) or None (a folder). ``write`` makes every file once (the ``manifest`` role
    last: ``manifest(digests)`` gives its bytes from the SHA-256 of every file, in
    ``files`` order) and returns the bytes written; then ``digests`` holds the SHA-256 of
    each file as stored, in ``files`` order, and ``checks`` (where the writer computed
    them) the read-back's XXH3-128 of the same bytes (``media.readback.new_check``)."""

    size: int | None
    digests: list
    checks: list

    def write(self, manifest: Callable[[list], bytes] | None) -> int: ...

    def commit(self) -> None: ...

    def abort(self) -> None: ...

    def source(self) -> ContextManager:
        """The medium as written, before commit, as a ``MediumSource`` to read back."""
        ...


class BuildPorts(Protocol):
    def collect(self, sources: Sequence[str]) -> list[tuple[str, int]]: ...

    def open_input(self, source: str) -> BinaryIO: ...

    def resolve(self, dicomdir: str, file_id) -> tuple[str, int] | None: ...

    def check_output(self, path: str) -> None: ...

    def absolute(self, path: str) -> str: ...

    def open_disc(self, path: str, files: list[DiscFile], layout: DiscLayout,
                  on_bytes: Callable[[int, str], None],
                  workers: int | None = None) -> DiscWriter: ...

    # optional: ``mapper(workers)(fn, items)`` yields ``fn(item)`` for every item, in order
    # (the edge's worker processes; ``fn`` may be a closure); the scan runs through it


# -- planning ---------------------------------------------------------------------------

def choose_profile(name: str | None, *, iso: bool, secure: bool, output: str) -> MediaProfile:
    if name:
        profile = media_profile(name)
    else:
        base = DEFAULT_ISO_PROFILE if iso else DEFAULT_FOLDER_PROFILE
        profile = media_profile(base.replace("STD-GEN-", "STD-GEN-SEC-") if secure else base)
    if secure and not profile.secure:
        raise UsageError(f"{profile.id} is not a secure profile, and PS3.11 allows Secure DICOM "
                         f"Files only on secure ones; use "
                         f"{profile.id.replace('STD-GEN-', 'STD-GEN-SEC-')}", path=output,
                         code="USAGE_PROFILE_NOT_SECURE")
    if iso and profile.family == "usb":
        raise UsageError(f"{profile.id} is a USB profile; give a folder, or a CD/DVD/BD profile "
                         "for an image", path=output, code="USAGE_PROFILE_MEDIUM")
    return profile


def disc_names(output: str, n: int, iso: bool) -> list[str]:
    if n == 1:
        return [output]
    stem, ext = (output[:-4], output[-4:]) if iso else (output.rstrip("/"), "")
    return [f"{stem}-{i}{ext}" for i in range(1, n + 1)]


@dataclass
class _Disc:
    """One medium: its plan and its files in write order."""

    plan: Any
    files: list[DiscFile]


def _manifest_maker(disc: _Disc, made: list) -> Callable[[list], bytes]:
    """``MANIFEST.SHA`` of a medium from the digests of its other files (as stored); the
    bytes made are appended to ``made`` (the read-back checks them)."""
    def make(digests: list) -> bytes:
        entries = []
        for f, digest in zip(disc.files, digests):
            if f.role != "manifest":
                if digest is None:
                    raise EnvironmentFailure("a file was not written before the manifest")
                entries.append((f.name, digest))
        made.append(manifest_bytes(entries))
        return made[-1]
    return make


def _plan_discs(req: BuildRequest, profile: MediaProfile, scan: ScanResult, opener,
                stages: FileStages, base_uid: str, fileset_id: str, created: str):
    """The whole job's plan and its media: spanning, each medium's File-set, PDI pages and
    manifest. The job is planned once: each file's stages are prepared once (one content
    key per file, whatever medium it lands on); a medium of a spanned job takes its part
    of the job's File-set model and those prepared files."""
    cap = req.capacity or profile.capacity_bytes
    unbounded = dataclasses.replace(profile, capacity_bytes=None)
    whole = plan_build(scan, profile=unbounded, opener=opener, fileset_uid=base_uid,
                       fileset_id=fileset_id, fill_missing=req.fill_missing, stages=stages)
    prepared = {f.source: f.producer for f in whole.files if f.role == "instance"}
    udf = req.iso and profile.family in ("dvd", "bd")
    overhead = Overhead(udf=udf)
    # the DICOMDIR, PDI pages and their folder, and the manifest: a few sectors each
    reserve = 4 * SECTOR + (4 * SECTOR if req.pdi else 0)
    groups: list = [None]
    need = estimate_disc_bytes([f.size for f in whole.files],
                               len({f.file_id[:k] for f in whole.files
                                    for k in range(1, len(f.file_id))}), overhead)
    if cap is not None and need + reserve > cap:
        if not req.span:
            raise InputError(f"about {need + reserve} bytes do not fit on one {profile.medium} "
                             f"({cap} bytes); add --span to split the job over several media "
                             "at study boundaries", path=req.output, code="PLAN_CAPACITY")
        size_of = {f.source: f.size for f in whole.files if f.role == "instance"}
        groups = split_for_media(whole.model, size_of.__getitem__, cap, reserve=reserve,
                                 overhead=overhead)
    discs = []
    for i, group in enumerate(groups, 1):
        if group is None:
            plan = whole
        else:
            plan = plan_medium(subset_model(whole.model, set(group)), profile=unbounded,
                               fileset_uid=f"{base_uid}.{i}", fileset_id=fileset_id,
                               opener=opener, stages=stages, pipelines=prepared)
        files = [DiscFile(tuple(pf.file_id), pf.producer, pf.role) for pf in plan.files]
        if req.pdi:
            for comps, data in pdi_files(plan.model, secure=profile.secure, profile_id=profile.id,
                                         disc=i, of=len(groups), institution=req.pdi_institution,
                                         contact=req.pdi_contact, created=created).items():
                files.append(DiscFile(comps, BytesProducer(data, kind="content"), "content"))
        if req.manifest:  # it covers every other file of the medium
            msize = sum(manifest_line_size(f.name) for f in files)
            files.append(DiscFile((MANIFEST_NAME,), Placeholder(msize), "manifest"))
        discs.append(_Disc(plan, files))
    return whole, discs


# -- the job ----------------------------------------------------------------------------

class _Bytes:
    """Progress in bytes over the whole job."""

    def __init__(self, total: int, on_progress: Progress | None):
        self.total = total
        self.done = 0
        self.on_progress = on_progress

    def __call__(self, n: int, name: str) -> None:
        self.done += n
        if self.on_progress is not None:
            self.on_progress({"event": "progress", "done_bytes": self.done,
                              "total_bytes": self.total, "file": name})


def preflight(req: BuildRequest, ports: BuildPorts) -> MediaProfile:
    """The refusals that need no input read: profile, recipients, output. ``run_build``
    starts with them; a front end with work of its own before the build (the CLI's
    de-identification pass) calls it first."""
    profile = choose_profile(req.profile, iso=req.iso,
                             secure=bool(req.recipients or req.signers), output=req.output)
    if profile.secure and not req.recipients:
        raise UsageError(f"{profile.id} is a secure profile: give --encrypt-to CERT and/or "
                         "--password-env VAR", path=req.output,
                         code="USAGE_SECURE_NEEDS_RECIPIENT")
    if req.verify not in MODES:
        raise UsageError(f"read-back mode {req.verify!r}: one of {', '.join(MODES)}",
                         path=req.output, code="USAGE_BAD_INPUT")
    dataset_stage(req, ports)   # its refusals
    ports.check_output(req.output)
    return profile


def dataset_stage(req: BuildRequest, ports: BuildPorts) -> SignDatasetStage:
    """The job's ``sign_dataset`` stage: signing with ``req.dataset_signer``, or only the
    removal of signatures a conversion broke."""
    return SignDatasetStage.for_job(ports.open_input, profile=req.sign_datasets,
                                    signer=req.dataset_signer,
                                    authorized_copy=req.authorized_copy,
                                    drop_covering=req.drop_covering_signatures,
                                    policy=req.policy)


def run_build(req: BuildRequest, ports: BuildPorts, *,
              on_progress: Progress | None = None) -> BuildResult:
    """The one build path (see the module docstring)."""
    profile = preflight(req, ports)
    fileset_id = ("DICOM" if req.iso else "") if req.fileset_id is None else req.fileset_id
    base_uid = req.fileset_uid or f"2.25.{uuid.uuid4().int}"
    rng = req.rng or (lambda n: secrets.token_bytes(n))
    signing = dataset_stage(req, ports)
    stages = FileStages(
        read=ReadStage(ports.open_input),
        sign_dataset=signing,
        protect=ProtectStage.for_job(recipients=req.recipients, signers=req.signers,
                                     policy=req.policy, options=req.options, rng=rng)
        if profile.secure else None)
    created = utc_now().strftime("%Y-%m-%d")

    inputs = ports.collect(req.sources)
    mapper = getattr(ports, "mapper", None)
    scan = scan_inputs(inputs, profile=profile, opener=ports.open_input, resolve=ports.resolve,
                       on_progress=on_progress,
                       mapper=mapper(req.workers) if mapper is not None else None)
    with collector_paused():
        whole, discs = _plan_discs(req, profile, scan, ports.open_input, stages, base_uid,
                                   fileset_id, created)
    names = disc_names(req.output, len(discs), req.iso)
    for n in names[1:]:
        ports.check_output(n)
    release_scan_values(scan)  # every plan is made: the records hold what is needed

    cap = req.capacity or profile.capacity_bytes
    udf = req.iso and profile.family in ("dvd", "bd")
    progress = _Bytes(sum(f.producer.size for d in discs for f in d.files), on_progress)
    writers: list = []
    written, digests, costs = [], [], []
    try:
        for i, (name, disc) in enumerate(zip(names, discs), 1):
            layout = DiscLayout("iso" if req.iso else "folder", volume_id=fileset_id, udf=udf,
                                interchange_level=1 if profile.family == "cd" else 3,
                                set_size=len(discs), seqnum=i,
                                readback=req.verify != "none")
            writer = ports.open_disc(name, disc.files, layout, progress, req.workers)
            writers.append(writer)
            if req.iso and cap is not None and writer.size is not None and writer.size > cap:
                raise InputError(f"the image needs {writer.size} bytes, over the {cap}-byte "
                                 "capacity of the medium", path=name, code="PLAN_CAPACITY")
            made: list[bytes] = []
            make = _manifest_maker(disc, made) if req.manifest else None
            written.append(writer.write(make))
            digests.append(list(writer.digests))
            costs.append(_read_back(req, writer, disc, digests[-1], made[-1] if made else None,
                                    name))
        for writer in writers:
            writer.commit()
    finally:
        for writer in writers:
            writer.abort()   # a no-op on a committed medium

    return _result(req, profile, scan, whole, discs, [ports.absolute(n) for n in names],
                   written, digests, fileset_id, signing, costs)


def _read_back(req: BuildRequest, writer, disc: _Disc, digests: list, manifest: bytes | None,
               name: str) -> ReadbackCost:
    """Read the medium back as written, before it is committed (``media.readback``)."""
    if req.verify == "none":
        return ReadbackCost("none")
    expected = []
    checks = getattr(writer, "checks", None) or [None] * len(digests)   # None: SHA-256
    for f, digest, check in zip(disc.files, digests, checks):
        if f.role == "manifest":
            sha = hashlib.sha256(manifest or b"").hexdigest()
        else:
            sha = digest
        data = getattr(getattr(f.producer, "item", None), "data", None)
        expected.append(Expected(
            f.name, f.role, f.producer.size, sha,
            content_key=getattr(f.producer, "content_key", None),
            plain_sha256=hashlib.sha256(data).hexdigest()
            if data is not None and f.role == "dicomdir" else None,
            check=check if f.role != "manifest" else None))
    with writer.source() as source:
        return read_back(source, expected, mode=req.verify, label=name, manifest=manifest,
                         workers=req.workers)


def _result(req, profile, scan, whole, discs, names, written, digests,
            fileset_id, signing, costs) -> BuildResult:
    images = []
    total = ReadbackCost(req.verify)
    for c in costs:
        total.add(c)
    for i, (name, disc, size, sums, cost) in enumerate(zip(names, discs, written, digests,
                                                          costs), 1):
        d = PlanReport(plan=disc.plan, scan=scan, output=name, written=True).to_dict()
        images.append({"path": name, "disc": i, "of": len(discs),
                       "kind": "iso" if req.iso else "folder", "size": size,
                       "fileset_uid": disc.plan.fileset_uid, "counts": d["counts"],
                       "dicomdir": d["dicomdir"], "readback": cost.to_dict(),
                       "files": [{"path": f.name, "role": f.role, "size": f.producer.size,
                                  "sha256": h}
                                 for f, h in zip(disc.files, sums) if f.role != "manifest"]})
    doc = PlanReport(plan=whole, scan=scan, output=names[0], written=True).to_dict()
    opts = req.options
    doc.update({"secure": profile.secure, "images": images, "readback": total.to_dict(),
                "protection": ({"cipher": opts.cipher, "framing": opts.framing,
                                "integrity": "signedData" if req.signers else "digestedData",
                                "recipients": len(req.recipients)} if profile.secure else None)})
    if signing.profile or signing.findings:
        doc["dataset_signatures"] = {"profile": signing.profile,
                                     "authorized_copy": req.authorized_copy,
                                     "findings": list(signing.findings)}
    labels = None
    if req.labels:
        labels = {"discs": [label_data(d.plan.model, disc=i, of=len(discs),
                                       fileset_id=fileset_id)
                            for i, d in enumerate(discs, 1)]}
    return BuildResult(document=doc, images=tuple(names), profile=profile.id,
                       secure=profile.secure, labels=labels)
