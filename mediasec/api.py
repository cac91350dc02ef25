"""The Python API: one function per job, a request in, a result out.

::

    import mediasec
    result = mediasec.build(mediasec.BuildRequest(["study/"], "disc.iso",
                            recipients=[mediasec.PasswordRecipient(b"secret")]),
                            on_progress=print)
    report = mediasec.verify(mediasec.VerifyRequest("disc.iso",
                             decrypters=[mediasec.PasswordDecrypter(b"secret")]))
    assert not report.failed

The command line (``mediasec.cli``) runs exactly these functions: it maps flags to a
request, renders the result and maps exceptions to exit codes. Errors are the
``mediasec.errors`` tree (``UsageError``/``InputError``: cannot do what was asked,
``VerificationError``: the data is bad, ``EnvironmentFailure``: I/O). Progress is a
callback taking one dict per event (``{"event": "scan"|"progress", ...}``).

Each call is one job (``mediasec._job.Job``): its caches, its worker processes and its
outputs are its own, so two calls may run at once in two threads of one process.
Keys and passwords are objects (``mediasec.cms.keys``), never file names or strings on a
command line; ``load_certificates``/``load_private_key`` read them from bytes.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

from mediasec._data import media_profile
from mediasec._job import Job
from mediasec.cms.envelope import looks_enveloped
from mediasec.cms.secure import (ProtectOptions, SecureFileProducer, SecureFileReport,
                                 inspect_secure_file, open_secure_file, raise_for_failures)
from mediasec.dicom.scan import scan_file
from mediasec.errors import (EnvironmentFailure, InputError, InternalError, MediasecError,
                             NotCMSError, NotDicomError, UsageError, VerificationError)
from mediasec.io.fs import (AnonymousUnsupported, AtomicOutput, StagingDir, check_new_output,
                            env_error, file_ids, open_regular)
from mediasec.io.keys import file_chunks
from mediasec.io.rewrite import list_inputs, rewrite_files
from mediasec.io.medium import medium_spec, open_medium
from mediasec.io.workers import (Pool, default_workers, examine_ahead, worker_extract,
                                 worker_init)
from mediasec.media.extract import ExtractReport, link_findings, plan_extract
from mediasec.media.dirindex import index_medium, planned_tasks
from mediasec.media.examine import examine_file
from mediasec.media.validate import finish_validation
from mediasec.media.source import MediumIndex
from mediasec.media.verify_report import MediaReport, tree_from_facts
from mediasec.policy import AlgorithmPolicy, TrustContext
from mediasec.report import Outcome
from mediasec.sign import (SignatureReport, SignedSignature, SignRequest, check_part, finish,
                           open_part10, sign_part)
from mediasec.sign.status import DroppedSignature, change_status

__all__ = ["BuildRequest", "BuildResult", "build", "check_build", "VerifyRequest", "verify", "ExtractRequest",
           "extract", "ListRequest", "list_medium", "ProtectRequest", "ProtectResult", "protect",
           "UnprotectRequest", "unprotect", "InspectRequest", "InspectResult", "inspect",
           "DeidentifyRequest", "ReidentifyRequest", "RewriteResult", "deidentify",
           "reidentify", "UnprotectReport", "SignFilesRequest", "SignFilesResult",
           "SignedFileResult", "sign_files", "sign_outputs", "check_signer",
           "CheckSignaturesRequest", "CheckSignaturesResult", "check_signatures",
           "EchoRequest", "EchoResult", "echo", "SendRequest", "SendResult", "send",
           "ReceiveRequest", "ReceiveResult", "Receiver", "receive"]

Progress = Callable[[dict], None]


def __getattr__(name: str):
    """``BuildRequest``/``BuildResult`` load with the build's modules on first use (PEP 562):
    ``verify``, ``ls`` and ``extract`` start without them."""
    if name in ("BuildRequest", "BuildResult"):
        from mediasec.media import jobs
        value = getattr(jobs, name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'mediasec.api' has no attribute {name!r}")


# -- build -------------------------------------------------------------------------------

def _normalized(request: BuildRequest) -> BuildRequest:
    if isinstance(request.sources, (str, bytes, os.PathLike)):
        raise UsageError("BuildRequest.sources is a list of files and folders",
                         code="USAGE_BAD_INPUT")
    return dataclasses.replace(request, sources=tuple(os.fspath(s) for s in request.sources),
                               output=os.fspath(request.output))


def build(request: BuildRequest, *, on_progress: Progress | None = None) -> BuildResult:
    """Build a File-set folder or disc image (``request.output``); see ``BuildRequest``.
    Nothing exists at the output unless the whole job succeeded."""
    # build only (pydicom): not imported for verify, ls, extract
    from mediasec.io.discs import DeidentifyingPorts, FileSystemPorts
    from mediasec.media.jobs import run_build

    request = _normalized(request)
    ports = FileSystemPorts()
    if request.deidentify is not None:
        ports = DeidentifyingPorts(ports, request.deidentify)
        # de-identified: Study Date/ID are empty, so the directory keys are made up
        request = dataclasses.replace(request, fill_missing=True)
    with Job("build").active():
        result = run_build(request, ports, on_progress=on_progress)
    if request.deidentify is not None:
        result.document["deidentify"] = {
            "files": ports.deidentified,
            "escrow": bool(request.deidentify.escrow),
            "dangling_references": request.deidentify.dangling_references(),
            "findings": [{"path": path, **f.to_dict()} for path, f in ports.findings
                         if f.outcome in (Outcome.WARNING, Outcome.FAILED)]}
    return result


def check_build(request: BuildRequest) -> None:
    """The refusals ``build`` makes before reading any input (profile, recipients, output),
    for a caller with work of its own to do first."""
    from mediasec.io.discs import FileSystemPorts
    from mediasec.media.jobs import preflight

    preflight(_normalized(request), FileSystemPorts())


# -- verify ------------------------------------------------------------------------------

@dataclass(frozen=True)
class VerifyRequest:
    """A disc image, block device or folder to check. ``decrypters`` open a secure one
    (``KeyDecrypter``, ``PasswordDecrypter``); ``trust`` anchors signer certificates."""

    medium: str
    decrypters: Sequence = ()
    trust: TrustContext | None = None
    profile: str | None = None
    workers: int | None = None


def verify(request: VerifyRequest, *, on_progress: Progress | None = None) -> MediaReport:
    """Every check of ``mediasec.media.validate``; ``report.failed`` says if one failed."""
    profile = media_profile(request.profile) if request.profile else None
    decrypters = list(request.decrypters)
    spec = medium_spec(request.medium)
    with Job("verify").active():
        # workers first (forked small), then the medium is listed in this process; the
        # workers examine the files while this process opens the DICOMDIR and the manifest
        with Pool(request.workers or default_workers(), setup=worker_init,
                  args=(spec, decrypters, request.trust, None)) as pool:
            with open_medium(request.medium) as source:
                index = MediumIndex(source.entries())
                tasks = planned_tasks(index)
                facts = examine_ahead(pool, tasks)
                try:
                    fsi = index_medium(source, decrypters=decrypters, trust=request.trust,
                                       index=index)
                    return finish_validation(
                        source, fsi, decrypters=decrypters, trust=request.trust,
                        examiner=lambda _tasks: facts, profile=profile,
                        on_progress=on_progress)
                finally:
                    facts.close()


# -- extract -----------------------------------------------------------------------------

@dataclass(frozen=True)
class ExtractRequest:
    """Valid files of ``medium``, decrypted, into the new folder ``output``."""

    medium: str
    output: str
    decrypters: Sequence = ()
    trust: TrustContext | None = None
    include_invalid: bool = False
    workers: int | None = None
    private: bool = False          # folders 0700 and files 0600 (default 0755/0644)


def _plan_read(source, decrypters, trust, label: str):
    """Index a medium (DICOMDIR, manifest, listing) and plan each file's read and checks:
    what ``extract`` writes and ``send`` sends."""
    fsi = index_medium(source, decrypters=decrypters, trust=trust)
    if fsi.dicomdir_secure and not decrypters:
        raise UsageError("the medium is encrypted; give --key/--cert or --password-env",
                         path=label, code="USAGE_NO_KEY")
    return fsi, plan_extract(fsi)


def extract(request: ExtractRequest, *, on_progress: Progress | None = None) -> ExtractReport:
    """Each plaintext file exists only as an anonymous inode until its checks pass; the
    folder appears only if at least one file was written. Progress: one event per file
    read, in bytes of the medium."""
    try:
        return _extract(request, on_progress)
    except EnvironmentFailure as exc:
        raise _named_in_output(exc, request.output)


def _named_in_output(exc: EnvironmentFailure, output: str) -> EnvironmentFailure:
    """An error on a file of the hidden staging folder names the file it was to become."""
    staging = os.path.join(os.path.dirname(os.path.abspath(output)),
                           f".{os.path.basename(os.path.abspath(output))}.partial-")
    if exc.path and exc.path.startswith(staging):
        rest = exc.path[len(staging):].partition(os.sep)[2]
        exc.path = os.path.join(output, rest) if rest else output
    return exc


def _extract(request: ExtractRequest, on_progress: Progress | None) -> ExtractReport:
    decrypters = list(request.decrypters)
    spec = medium_spec(request.medium)
    staging = StagingDir(request.output, mode=0o700 if request.private else 0o755)
    with Job("extract").active(), staging as root:
        with Pool(request.workers or default_workers(), setup=worker_init,
                  args=(spec, decrypters, request.trust,
                        {"staging": root, "include_invalid": request.include_invalid,
                         "private": request.private})) as pool:
            with open_medium(request.medium) as source:
                fsi, tasks = _plan_read(source, decrypters, request.trust, request.medium)
                total, done, results = sum(t.size for t in tasks), 0, []
                for task, result in zip(tasks, pool.run(worker_extract, tasks)):
                    results.append(result)
                    done += task.size
                    if on_progress is not None:
                        on_progress({"event": "progress", "done_bytes": done,
                                     "total_bytes": total, "file": task.path})
        findings = list(fsi.medium_findings)
        if fsi.dicomdir_result is not None:
            findings += [f for f in fsi.dicomdir_result.findings
                         if f.outcome is not Outcome.PASSED]
        planned = {t.path for t in tasks}
        for path, fs in sorted(fsi.missing.items()):
            findings += [f.__class__(f.code, f.outcome, f"{path}: {f.message}", f.detail)
                         for f in fs if path not in planned]
        findings += link_findings(fsi)
        report = ExtractReport(request.output, tuple(results), tuple(findings))
        if report.written:
            staging.commit()
    return report


# -- ls ----------------------------------------------------------------------------------

@dataclass(frozen=True)
class ListRequest:
    medium: str
    decrypters: Sequence = ()
    trust: TrustContext | None = None


def list_medium(request: ListRequest) -> dict:
    """The ``mediasec.ls/1`` body: the tree from the DICOMDIR, else from the files' headers
    (this listing is the user's own and holds patient names)."""
    decrypters = list(request.decrypters)
    with Job("ls").active(), open_medium(request.medium) as source:
        fsi = index_medium(source, decrypters=decrypters, trust=request.trust)
        notes = []
        if fsi.usable:
            tree, origin = fsi.tree, "dicomdir"
        elif fsi.dicomdir_secure and not decrypters:
            tree, origin = [], "none"
            notes.append("the DICOMDIR is encrypted: give --key/--cert or --password-env "
                         "to list patients and studies")
        else:
            facts = []
            for e in fsi.index.entries:
                if e.kind != "file" or e is fsi.dicomdir_entry or e is fsi.manifest_entry:
                    continue
                facts.append(examine_file(source.open(e.handle), path=e.path, size=e.size,
                                          decrypters=decrypters, header_only=True))
            tree, origin = tree_from_facts(facts), "files"
            notes.append("no usable DICOMDIR: the tree was built from the files' headers")
        files = [{"path": e.path, "size": e.size, "kind": e.kind} for e in fsi.index.entries]
        return {"medium": {"path": source.label, "kind": source.description,
                           "volume_id": source.volume_id,
                           "fileset_id": fsi.directory.fileset_id if fsi.usable else None,
                           "dicomdir": getattr(fsi.dicomdir_entry, "path", None),
                           "dicomdir_format": (fsi.dicomdir_facts.kind
                                               if fsi.dicomdir_facts else None)},
                "source": origin, "notes": notes, "tree": tree, "files": files}


# -- single files: protect, unprotect, inspect -------------------------------------------

def _sniff(f) -> bytes:
    head = f.read(132)
    f.seek(0)
    return head


def _check_part10(f, size: int, src: str) -> None:
    """``DICM`` at byte 128 is not enough: the File Meta Information and the data set's
    first elements must parse (a damaged file raises ``NotDicomError``/``InputError``)."""
    try:
        scan_file(f, size, source=src)
    except OSError as exc:
        raise env_error(exc, src) from exc
    f.seek(0)


@dataclass(frozen=True)
class ProtectRequest:
    source: str
    output: str
    recipients: Sequence
    signers: Sequence = ()
    options: ProtectOptions = ProtectOptions()
    policy: AlgorithmPolicy = AlgorithmPolicy()
    force: bool = False            # replace an existing output file (never the input)


@dataclass(frozen=True)
class ProtectResult:
    input: str
    output: str
    size: int
    cipher: str
    integrity: str
    framing: str
    recipients: int

    def to_dict(self) -> dict:
        return {"schema": "mediasec.protect/1", "input": self.input, "output": self.output,
                "size": self.size, "cipher": self.cipher, "integrity": self.integrity,
                "framing": self.framing, "recipients": self.recipients}


def protect(request: ProtectRequest) -> ProtectResult:
    """One DICOM file -> one Secure DICOM File (signed or digested, then enveloped)."""
    src, out = request.source, request.output
    if not request.recipients:
        raise UsageError("no recipient: give --encrypt-to CERT and/or --password-env VAR",
                         code="USAGE_NO_RECIPIENT")
    check_new_output(out, force=request.force, inputs=(src,))
    with Job("protect").active(), open_regular(src) as f:
        head = _sniff(f)
        if looks_enveloped(head):
            raise InputError("already a Secure DICOM File", path=src, code="INPUT_ALREADY_SECURE")
        if len(head) < 132 or head[128:132] != b"DICM":
            raise NotDicomError("not a DICOM Part 10 file (no DICM at byte 128)", path=src)
        size = os.fstat(f.fileno()).st_size
        _check_part10(f, size, src)
        try:
            producer = SecureFileProducer(size, recipients=request.recipients,
                                          signers=request.signers, options=request.options,
                                          policy=request.policy)
        except MediasecError as exc:
            raise exc.with_path(src)
        target = AtomicOutput(out)
        with target as dst:
            try:
                producer.write_to(f, dst)
            except OSError as exc:
                raise env_error(exc, out) from exc
            except MediasecError as exc:
                raise exc.with_path(src)
            target.commit()
    o = request.options
    return ProtectResult(src, out, producer.size, o.cipher,
                         "signedData" if request.signers else "digestedData", o.framing,
                         len(request.recipients))


@dataclass(frozen=True)
class UnprotectRequest:
    source: str
    output: str
    decrypters: Sequence
    trust: TrustContext = field(default_factory=TrustContext)
    force: bool = False            # replace an existing output file (never the input)
    strict: bool = False           # a warning or indeterminate finding fails too


def _open_report(src, decrypters, trust, sink) -> SecureFileReport:
    with open_regular(src) as f:
        try:
            return open_secure_file(file_chunks(f), decrypters=list(decrypters), sink=sink,
                                    trust=trust)
        except MediasecError as exc:  # first: a sink's EnvironmentFailure names the output
            raise exc.with_path(src)
        except OSError as exc:
            raise env_error(exc, src) from exc


def _raise_on(report: SecureFileReport, src: str, strict: bool = False) -> None:
    try:
        raise_for_failures(report)
    except VerificationError as exc:
        raise exc.with_path(src)
    if strict:
        for f in report.findings:
            if f.outcome in (Outcome.WARNING, Outcome.INDETERMINATE):
                raise VerificationError(f"--strict: {f.code}: {f.message}", path=src,
                                        code=f.code)


def _writer(dst, out):
    def write(mv):
        try:
            while mv:
                n = dst.write(mv)
                mv = mv[n:]
        except OSError as exc:
            raise env_error(exc, out) from exc
    return write


@dataclass(frozen=True)
class UnprotectReport(SecureFileReport):
    """A ``SecureFileReport`` and the decrypted file's DICOM dataset signatures
    (``mediasec.sign.SignatureReport``; None when it has none or they could not be read:
    ``dataset_note`` says why). They are reported, not checked for the exit status: that
    is about the CMS layer."""

    dataset_signatures: SignatureReport | None = None
    dataset_note: str | None = None

    def to_dict(self) -> dict:
        d = super().to_dict()
        d["dataset_signatures"] = (self.dataset_signatures.to_dict()
                                   if self.dataset_signatures is not None else None)
        return d


def _dataset_signatures(where: int | str, trust) -> tuple[SignatureReport | None, str | None]:
    """The dataset signatures of the Part 10 file open at descriptor ``where`` (read from
    its start, the descriptor itself untouched) or at path ``where``."""
    try:
        f = os.fdopen(os.dup(where), "rb") if isinstance(where, int) else open(where, "rb")
        with f:
            report = check_part(open_part10(f), trust=trust)
    except (MediasecError, OSError) as exc:
        return None, f"dataset signatures not checked: {getattr(exc, 'message', exc)}"
    return (report if report.signatures else None), None


def _with_dataset(report: SecureFileReport, where, trust) -> UnprotectReport:
    sigs, note = _dataset_signatures(where, trust)
    return UnprotectReport(**{f.name: getattr(report, f.name)
                              for f in dataclasses.fields(SecureFileReport)},
                           dataset_signatures=sigs, dataset_note=note)


def unprotect(request: UnprotectRequest) -> UnprotectReport:
    """Decrypt and check; the plain file appears at ``output`` only when every check
    passed (until then it has no name on disk). A failed check raises. The plain file's
    DICOM dataset signatures are checked before it is committed and reported."""
    src, out = request.source, request.output
    if not request.decrypters:
        raise UsageError("give --key (and --cert) or --password-env VAR to decrypt",
                         code="USAGE_NO_KEY")
    check_new_output(out, force=request.force, inputs=(src,))
    strict = request.strict
    with Job("unprotect").active():
        target = AtomicOutput(out, secret=True)
        try:
            dst = target.open()
        except AnonymousUnsupported:
            dst = None
        try:
            if dst is not None:
                report = _open_report(src, request.decrypters, request.trust,
                                      _writer(dst, out))
                _raise_on(report, src, strict)
                report = _with_dataset(report, target.fileno, request.trust)
                target.commit()
            else:
                # no anonymous temp files here: check everything first, then write
                _raise_on(_open_report(src, request.decrypters, request.trust, None), src, strict)
                target = AtomicOutput(out)
                with target as dst2:
                    report = _open_report(src, request.decrypters, request.trust,
                                          _writer(dst2, out))
                    _raise_on(report, src, strict)
                    target.commit()
                report = _with_dataset(report, out, request.trust)
        finally:
            if not target.committed:
                target.abort()
    return report


@dataclass(frozen=True)
class InspectRequest:
    source: str
    decrypters: Sequence = ()
    trust: TrustContext = field(default_factory=TrustContext)


@dataclass(frozen=True)
class InspectResult:
    source: str
    kind: str                          # "plain DICOM Part 10 file" | "Secure DICOM File"
    report: SecureFileReport | None = None

    @property
    def failed(self) -> bool:
        return bool(self.report is not None and self.report.failures())

    def to_dict(self) -> dict:
        body = {"schema": "mediasec.inspect/1", "file": self.source, "kind": self.kind}
        if self.report is not None:
            body.update(self.report.to_dict())
        return body


def inspect(request: InspectRequest) -> InspectResult:
    """A file's CMS structure (checked when decrypters are given) or its DICOM basics."""
    src = request.source
    with Job("inspect").active():
        with open_regular(src) as f:
            head = _sniff(f)
            if not looks_enveloped(head) and len(head) >= 132 and head[128:132] == b"DICM":
                _check_part10(f, os.fstat(f.fileno()).st_size, src)
        if not looks_enveloped(head):
            if len(head) >= 132 and head[128:132] == b"DICM":
                return InspectResult(src, "plain DICOM Part 10 file")
            raise NotCMSError("neither a Secure DICOM File nor a DICOM Part 10 file", path=src)
        if request.decrypters:
            report = _open_report(src, request.decrypters, request.trust, None)
        else:
            with open_regular(src) as f:
                try:
                    report = inspect_secure_file(file_chunks(f))
                except MediasecError as exc:
                    raise exc.with_path(src)
    return InspectResult(src, "Secure DICOM File", report)


# -- attribute confidentiality: deidentify, reidentify ----------------------------------

@dataclass(frozen=True)
class DeidentifyRequest:
    """De-identify ``inputs`` (files and folders) into ``output``: a file for one input
    file, else a new folder of ``<SOP Instance UID>.dcm``. ``job`` is a
    ``mediasec.deid.DeidJob`` (profile options, escrow recipients, mapping key)."""

    inputs: Sequence[str]
    output: str
    job: Any = field(repr=False)


@dataclass(frozen=True)
class RewriteResult:
    """``mediasec.deidentify/1`` or ``mediasec.reidentify/1``: one entry per written file
    (``input``, ``output``, what was done); ``duplicates``: inputs skipped as the same SOP
    Instance as an earlier one."""

    schema: str
    output: str
    files: tuple
    duplicates: tuple = ()
    extra: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {"schema": self.schema, "output": self.output, **self.extra,
                "files": [{"input": p, "output": o, **r.to_dict()} for p, o, r in self.files]}


def deidentify(request: DeidentifyRequest) -> RewriteResult:
    """PS3.15 E.1 Basic Profile and options; the originals sealed inside each file."""
    job, dups = request.job, []
    with Job("deidentify").active():
        files = rewrite_files(list_inputs(request.inputs), request.output, job.prepare,
                              secret=False, on_duplicate=dups.append)
    escrow = None
    if job.recipients:
        escrow = {"recipients": len(job.recipients), "cipher": job.cipher}
    return RewriteResult("mediasec.deidentify/1", request.output, tuple(files), tuple(dups), {
        "options": list(job.profile.options),
        "method_codes": [c for c, _ in job.profile.codes],
        "longitudinal_temporal": job.profile.temporal, "escrow": escrow,
        "mapping": "keyed" if job.mapper.keyed else "random per job",
        "dangling_references": job.dangling_references()})


@dataclass(frozen=True)
class ReidentifyRequest:
    """Restore the originals of de-identified ``inputs`` into ``output`` (a file for one
    input file, else a new folder) with an escrow key or password."""

    inputs: Sequence[str]
    output: str
    decrypters: Sequence


def reidentify(request: ReidentifyRequest) -> RewriteResult:
    if not request.decrypters:
        raise UsageError("give --key (and --cert) or --password-env VAR to re-identify",
                         code="USAGE_NO_KEY")
    from mediasec.deid.files import prepare_reidentify   # pydicom: ~0.4 s, not for a build

    decrypters, dups = list(request.decrypters), []
    with Job("reidentify").active():
        files = rewrite_files(list_inputs(request.inputs), request.output,
                              lambda src: prepare_reidentify(src, decrypters=decrypters),
                              secret=True, on_duplicate=dups.append)
    return RewriteResult("mediasec.reidentify/1", request.output, tuple(files), tuple(dups))


# -- dataset signatures (PS3.15 Annex C): sign, check-signatures -------------------------

def check_signer(signer, chain: Sequence = (), *, now=None) -> None:
    """The refusals made before signing: a certificate not valid now (its signature would
    not verify), a chain (intermediate CAs) holding no issuer of the signer."""
    import datetime as _dt
    cert = signer.certificate
    now = now or _dt.datetime.now(_dt.timezone.utc)
    if not cert.not_valid_before_utc < now < cert.not_valid_after_utc:
        raise UsageError("the signer's certificate is not valid now (a signature made with it "
                         "would not verify)", code="SIGN_CERT_NOT_VALID")
    if chain and not any(c.subject == cert.issuer for c in chain):
        raise UsageError("the chain holds no issuer of the signer's certificate",
                         code="SIGN_CHAIN_MISMATCH")


@dataclass(frozen=True)
class SignFilesRequest:
    """Add one DICOM digital signature (PS3.15 Annex C) to each of ``inputs``.

    ``output``: a file for one input, else an existing folder (each output named as its
    input); or ``in_place``: each input replaced atomically. ``signer``: an ``RSASigner``
    (RSA >= 2048 bits unless ``policy`` allows legacy). ``signature``: what to sign
    (``mediasec.sign.SignRequest``: profile, MAC, purpose, item path, tags).
    ``authorize``: make an Authorized Original first (OR or none -> AO, PS3.15 A.1), which
    needs the authorization profile; a signature covering the status makes it refuse
    unless ``drop_covering_signatures`` (then it is removed and reported)."""

    inputs: Sequence[str]
    signer: Any = field(repr=False)
    output: str | None = None
    in_place: bool = False
    signature: SignRequest = SignRequest()
    chain: Sequence = field(default=(), repr=False)
    policy: AlgorithmPolicy = AlgorithmPolicy()
    authorize: bool = False
    authorization_comment: str | None = None
    equipment_cert_number: str | None = None
    drop_covering_signatures: bool = False
    force: bool = False            # replace existing output files (never an input)


@dataclass(frozen=True)
class SignedFileResult:
    input: str
    output: str
    size: int
    signature: SignedSignature
    dropped: tuple[DroppedSignature, ...] = ()
    sop_instance_status: str | None = None

    def to_dict(self) -> dict:
        return {"input": self.input, "output": self.output, "size": self.size,
                "signature": self.signature.to_dict(),
                "dropped": [d.to_dict() for d in self.dropped],
                "sop_instance_status": self.sop_instance_status}


@dataclass(frozen=True)
class SignFilesResult:
    files: tuple[SignedFileResult, ...]

    def to_dict(self) -> dict:
        return {"schema": "mediasec.sign/1", "files": [f.to_dict() for f in self.files]}


def sign_outputs(inputs: Sequence[str], output: str | None, *, in_place: bool = False,
                 force: bool = False) -> list[tuple[str, str]]:
    """(input, output) pairs of a ``sign_files`` request, with its refusals about outputs
    (a front end calls it before asking for a key's passphrase)."""
    if isinstance(inputs, (str, bytes, os.PathLike)) or not inputs:
        raise UsageError("SignFilesRequest.inputs is a list of files", code="USAGE_BAD_INPUT")
    files, out = [os.fspath(f) for f in inputs], output
    if in_place and out:
        raise UsageError("give -o OUT or --in-place, not both", code="USAGE")
    if not in_place and not out:
        raise UsageError("give -o OUT (a file, or a folder for several inputs) or --in-place",
                         code="USAGE")
    if in_place:
        return [(f, f) for f in files]
    out = os.fspath(out)
    if os.path.isdir(out):
        pairs = [(f, os.path.join(out, os.path.basename(f))) for f in files]
    elif len(files) > 1:
        raise UsageError("several inputs: -o must be an existing folder", path=out,
                         code="USAGE")
    else:
        pairs = [(files[0], out)]
    ids = file_ids(files)      # once: checking each output against every input was O(n^2)
    for src, dst in pairs:
        if os.path.abspath(src) == os.path.abspath(dst):
            raise UsageError("output is the input; use --in-place", path=dst, code="USAGE")
        check_new_output(dst, force=force, input_ids=ids)
    return pairs


def sign_files(request: SignFilesRequest) -> SignFilesResult:
    """Sign each input (``mediasec sign``). Each output is atomic and written only once
    the new signature verified; an error stops at that file (those before it are done)."""
    req = request.signature
    if request.authorize and req.profile != "authorization":
        raise UsageError("--authorize signs with the authorization profile", code="USAGE")
    if request.authorize and req.item_path:
        raise UsageError("--authorize signs the main data set; --item does not apply",
                         code="USAGE")
    pairs = sign_outputs(request.inputs, request.output, in_place=request.in_place,
                         force=request.force)
    check_signer(request.signer, request.chain)
    results = []
    with Job("sign").active():
        for src, dst in pairs:
            results.append(_sign_one(src, dst, request))
    return SignFilesResult(tuple(results))


def _sign_one(src: str, dst: str, request: SignFilesRequest) -> SignedFileResult:
    with open_regular(src) as f:
        try:
            part = open_part10(f)
            dropped = []
            if request.authorize:
                part, dropped = change_status(part, "AO", comment=request.authorization_comment,
                                              equipment_cert=request.equipment_cert_number,
                                              drop_covering=request.drop_covering_signatures)
            part, facts = sign_part(part, request.signer, request.signature,
                                    policy=request.policy)
            _self_check(part, facts)
            signed = finish(part, [facts], dropped)
            # anonymous (O_TMPFILE where the file system has it): no scan of the folder
            # for stale partial files before each of thousands of outputs
            target = AtomicOutput(dst)
            with target as out:
                signed.write_to(_writer(out, dst))
                target.commit()
        except OSError as exc:
            raise env_error(exc, src) from exc
        except MediasecError as exc:
            raise exc.with_path(src)
    return SignedFileResult(src, dst, signed.size, facts, tuple(dropped),
                            "AO" if request.authorize else None)


def _self_check(part, facts) -> None:
    """Verify the signature just made before anything is written (a wrong answer is worse)."""
    report = check_part(part)
    mine = [s for s in report.signatures if s.uid == facts.uid]
    if len(mine) != 1 or mine[0].status not in ("valid", "trust_not_checked"):
        raise InternalError("the signature just made does not verify: "
                            f"{mine[0].message if mine else 'not found'}")


@dataclass(frozen=True)
class CheckSignaturesRequest:
    """Check every DICOM digital signature, at every level, of each file. DICOM carries
    the signer's certificate only: give intermediate CAs in ``trust.intermediates``.
    ``strict``: warnings and "not checked" count as failures."""

    files: Sequence[str]
    trust: TrustContext = field(default_factory=TrustContext)
    strict: bool = False


@dataclass(frozen=True)
class CheckSignaturesResult:
    """``reports``: (path, ``SignatureReport``) per readable file; ``errors``: (path,
    exception) per file that could not be read (one bad file does not hide the others)."""

    strict: bool
    reports: tuple[tuple[str, SignatureReport], ...]
    errors: tuple[tuple[str, BaseException], ...] = ()

    def file_failed(self, report: SignatureReport) -> bool:
        bad = (Outcome.FAILED, Outcome.WARNING, Outcome.INDETERMINATE) if self.strict \
            else (Outcome.FAILED,)
        return report.outcome in bad

    @property
    def failed(self) -> bool:
        return any(self.file_failed(r) for _p, r in self.reports)

    @property
    def outcome(self) -> str:
        if self.errors:
            return "error"
        if self.failed:
            return "failed"
        return ("passed" if all(r.outcome is Outcome.PASSED for _p, r in self.reports)
                else "warning")

    def to_dict(self) -> dict:
        return {"schema": "mediasec.check-signatures/1", "outcome": self.outcome,
                "strict": self.strict,
                "files": [{"path": p, **r.to_dict()} for p, r in self.reports],
                "errors": [{"path": p, "code": getattr(e, "code", "INTERNAL"),
                            "message": getattr(e, "message", str(e))}
                           for p, e in self.errors]}


def check_signatures(request: CheckSignaturesRequest) -> CheckSignaturesResult:
    """``mediasec check-signatures``: a report per file; unreadable files are listed in
    ``errors`` rather than raised."""
    reports, errors = [], []
    with Job("check-signatures").active():
        for path in request.files:
            path = os.fspath(path)
            try:
                with open_regular(path) as f:
                    try:
                        reports.append((path, check_part(open_part10(f),
                                                         trust=request.trust)))
                    except OSError as exc:
                        raise env_error(exc, path) from exc
                    except MediasecError as exc:
                        raise exc.with_path(path)
            except Exception as exc:  # noqa: BLE001 - one bad file must not hide the others
                errors.append((path, exc))
    return CheckSignaturesResult(request.strict, tuple(reports), tuple(errors))


# -- DICOM over TLS: echo, send, receive ------------------------------------------------
#
# The network verbs take a ``mediasec.net.tls.TLSConfig`` (our certificates and keys as
# objects, the trusted CAs, the PS3.15 Annex B profile) and a peer as ``AET@HOST[:PORT]``.
# Failures to reach or trust a peer raise ``PeerError`` (an ``EnvironmentFailure``).

@dataclass(frozen=True)
class EchoRequest:
    """C-ECHO ``to`` (``AET@HOST[:PORT]``, port 2762 by default) over TLS."""

    to: str
    tls: Any = field(repr=False)                    # mediasec.net.tls.TLSConfig
    calling_aet: str = "MEDIASEC"
    timeout: float = 15.0                           # connect + TLS handshake, seconds


@dataclass(frozen=True)
class EchoResult:
    """``mediasec.echo/1``: the peer, the TLS facts (version, suite, peer subject)."""

    peer: dict
    tls: dict
    status: int
    seconds: float

    def to_dict(self) -> dict:
        from mediasec.net.scu import ECHO_SCHEMA
        from mediasec import __version__
        return {"schema": ECHO_SCHEMA, "version": __version__, "peer": self.peer,
                "tls": self.tls, "status": self.status, "seconds": self.seconds}


def echo(request: EchoRequest) -> EchoResult:
    """Associate over TLS and C-ECHO; ``PeerError`` if no association or no success."""
    from mediasec.net.scu import Timeouts, echo as _echo, parse_peer
    peer = parse_peer(request.to)
    with Job("echo").active():
        doc = _echo(peer, request.tls, calling_aet=request.calling_aet,
                    timeouts=Timeouts(connect=request.timeout))
    return EchoResult(doc["peer"], doc["tls"], doc["status"], doc["seconds"])


@dataclass(frozen=True)
class SendRequest:
    """Send every DICOM instance of ``sources`` (disc images, folders, files) to ``to``.

    Each file gets the ``verify``/``extract`` checks first (``decrypters`` open Secure DICOM
    Files in memory, ``trust`` anchors signers); only valid ones go out unless
    ``include_invalid``. ``mapping`` (old Patient ID -> ``media.reconcile.PatientMapping``)
    or ``patient`` (one mapping for all) rewrite the patient with an Original Attributes
    Sequence item; an instance whose patient is not in ``mapping`` is not sent. ``state``
    names a resume file (confirmed instances are skipped on a re-run)."""

    sources: Sequence[str]
    to: str
    tls: Any = field(repr=False)                    # mediasec.net.tls.TLSConfig
    calling_aet: str = "MEDIASEC"
    decrypters: Sequence = field(default=(), repr=False)
    trust: TrustContext | None = None
    include_invalid: bool = False
    mapping: Any = None                             # {old_id: PatientMapping}
    patient: Any = None                             # PatientMapping
    state: str | None = None
    timeout: float = 15.0
    max_pdu: int = 0                                # largest PDU we accept (0: no limit)


class _TransferDocument:
    """What ``send`` and ``receive`` results share: their JSON document's counts and
    instances."""

    document: dict

    @property
    def counts(self) -> dict:
        return self.document["counts"]

    @property
    def instances(self) -> list:
        return self.document["instances"]

    def to_dict(self) -> dict:
        return dict(self.document)


@dataclass(frozen=True)
class SendResult(_TransferDocument):
    """``mediasec.send/1``: one entry per file in ``instances`` (``status`` sent,
    already-sent, failed, not-sent or skipped, with reasons)."""

    document: dict

    @property
    def outcome(self) -> str:
        return self.document["outcome"]

    @property
    def failed(self) -> bool:
        return self.outcome == "failed"


def _send_items(source, decrypters, trust, label: str):
    """The files of one source to send (planned as ``extract`` plans them) and notes on the
    files that are not DICOM."""
    from mediasec.io.sources import local_path
    from mediasec.net.scu import SendItem
    _fsi, tasks = _plan_read(source, decrypters, trust, label)
    items, notes = [], []
    for task in tasks:
        ref = task.ref
        here = local_path(source, task.handle)
        if ref is not None and ref.sop_class_uid and ref.sop_instance_uid and \
                ref.transfer_syntax:
            items.append(SendItem(source, task, ref.sop_class_uid, ref.sop_instance_uid,
                                  ref.transfer_syntax, here))
            continue
        # no DICOMDIR record: the header says what it is
        facts = examine_file(source.open(task.handle), path=task.path, size=task.size,
                             decrypters=decrypters, trust=trust, header_only=True)
        if facts.header is None:
            if facts.kind in ("plain", "secure"):
                items.append(SendItem(source, task, None, None, None, here))
            else:
                notes.append({"path": task.path, "status": "skipped",
                              "reasons": [{"code": "SEND_NOT_DICOM", "outcome": "info",
                                           "message": "not a DICOM file: not sent"}]})
            continue
        h = facts.header
        items.append(SendItem(source, task, h.sop_class_uid or h.media_sop_class_uid,
                              h.sop_instance_uid or h.media_sop_instance_uid,
                              h.transfer_syntax, here))
    return items, notes


def send(request: SendRequest, *, on_progress: Progress | None = None) -> SendResult:
    """Check, (decrypt,) reconcile and C-STORE each instance over one TLS association;
    ``result.failed`` if any instance failed or was not sent. ``PeerError`` when no
    association could be made (then nothing was sent)."""
    from mediasec.io.sources import open_sources
    from mediasec.net.scu import SendOptions, Timeouts, parse_peer, send_items
    peer = parse_peer(request.to)
    if isinstance(request.sources, (str, bytes, os.PathLike)):
        raise UsageError("SendRequest.sources is a list of files and folders",
                         code="USAGE_BAD_INPUT")
    if request.mapping is not None and request.patient is not None:
        raise UsageError("a patient map and one patient ID exclude each other", code="USAGE")
    decrypters = list(request.decrypters)
    opts = SendOptions(calling_aet=request.calling_aet, decrypters=tuple(decrypters),
                       trust=request.trust, include_invalid=request.include_invalid,
                       mapping=request.mapping, patient=request.patient,
                       state_path=request.state, timeouts=Timeouts(connect=request.timeout),
                       max_pdu=request.max_pdu)
    with Job("send").active():
        opened = open_sources(request.sources)
        try:
            items, notes = [], []
            for source in opened:
                more, why = _send_items(source, decrypters, request.trust,
                                        getattr(source, "label", "files"))
                items += more
                notes += why
            if not items:
                raise InputError("no DICOM instances to send",
                                 path=" ".join(map(os.fspath, request.sources)),
                                 code="SEND_NOTHING")
            doc = send_items(items, peer, request.tls, opts, notes=notes,
                             on_progress=on_progress)
        finally:
            for source in opened:
                source.close()
    return SendResult(doc)


@dataclass(frozen=True)
class ReceiveRequest:
    """A storage SCP over TLS storing into the folder ``output`` (made if missing).

    ``fileset``: store as a File-set (File IDs ``XXXXXXXX/XXXXXXXX/XXXXXXXX`` derived from
    the study, series and instance UIDs) and write its DICOMDIR, atomically, when the
    receiver stops. ``signature_check`` (callable: a binary file of the Part 10 bytes ->
    list of ``report.Finding``) refuses instances with a FAILED finding."""

    output: str
    tls: Any = field(repr=False)                    # mediasec.net.tls.TLSConfig
    fileset: bool = False
    aet: str = "MEDIASEC"
    bind: str = "0.0.0.0"
    port: int = 2762
    allow_aets: Sequence[str] = ()
    allow_subjects: Sequence[str] = ()
    quarantine: str | None = None
    signature_check: Callable | None = field(default=None, repr=False)
    max_associations: int = 32
    handshake_timeout: float = 10.0
    idle_timeout: float = 120.0
    max_pdu: int = 262144                           # largest PDU a peer may send us


@dataclass(frozen=True)
class ReceiveResult(_TransferDocument):
    """``mediasec.receive/1``: counts, one entry per instance received, association and
    refusal events, and (``fileset``) the DICOMDIR written. ``error``: why the DICOMDIR
    could not be written (every acknowledged instance is stored all the same)."""

    document: dict
    error: MediasecError | None = None


class Receiver:
    """A running receiver (``receive`` returns it started): ``port``, ``stop()``.

    Each association runs in its own thread (pynetdicom); each stored instance is handled
    under its own ``Job``, and the receiver keeps all of its state on itself - two
    receivers in one process share nothing."""

    def __init__(self, scp):
        self._scp = scp
        self._result: ReceiveResult | None = None

    @property
    def port(self) -> int:
        return self._scp.port

    def stop(self, drain: float = 30.0) -> ReceiveResult:
        """Stop accepting, let running associations finish (``drain`` seconds), write the
        DICOMDIR (``fileset``); the summary."""
        if self._result is None:
            self._scp.stop(drain)
            doc = self._scp.finish()
            self._result = ReceiveResult(doc, self._scp.fileset_error)
        return self._result

    def __enter__(self) -> "Receiver":
        return self

    def __exit__(self, *exc) -> bool:
        self.stop()
        return False


def receive(request: ReceiveRequest, *, on_event: Callable[[dict], None] | None = None
            ) -> Receiver:
    """Start a storage SCP; ``on_event`` gets association, refusal and store events (from
    the receiver's threads)."""
    from mediasec.net.scp import ReceiveOptions, StorageSCP
    try:
        os.makedirs(request.output, exist_ok=True)
    except OSError as exc:
        raise env_error(exc, request.output) from exc
    opts = ReceiveOptions(output=request.output, fileset=request.fileset, aet=request.aet,
                          bind=request.bind, port=request.port,
                          allow_aets=tuple(request.allow_aets),
                          allow_subjects=tuple(request.allow_subjects),
                          quarantine=request.quarantine,
                          signature_check=request.signature_check,
                          max_associations=request.max_associations,
                          handshake_timeout=request.handshake_timeout,
                          network_timeout=request.idle_timeout, max_pdu=request.max_pdu,
                          on_event=on_event)
    return Receiver(StorageSCP(request.tls, opts).start())
