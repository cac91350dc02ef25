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
from mediasec.errors import (InputError, MediasecError, NotCMSError, NotDicomError, UsageError,
                             VerificationError)
from mediasec.io.discs import DeidentifyingPorts, FileSystemPorts
from mediasec.io.fs import (AnonymousUnsupported, AtomicOutput, StagingDir, check_new_output,
                            env_error)
from mediasec.io.keys import file_chunks
from mediasec.io.rewrite import list_inputs, rewrite_files
from mediasec.io.medium import (medium_spec, open_medium, worker_examine, worker_extract,
                                worker_init)
from mediasec.io.workers import Pool, default_workers
from mediasec.media.extract import ExtractReport, plan_extract
from mediasec.media.jobs import BuildRequest, BuildResult, preflight, run_build
from mediasec.media.dirindex import index_medium
from mediasec.media.examine import examine_file
from mediasec.media.validate import finish_validation
from mediasec.media.verify_report import MediaReport, tree_from_facts
from mediasec.policy import AlgorithmPolicy, TrustContext
from mediasec.report import Outcome

__all__ = ["BuildRequest", "BuildResult", "build", "check_build", "VerifyRequest", "verify", "ExtractRequest",
           "extract", "ListRequest", "list_medium", "ProtectRequest", "ProtectResult", "protect",
           "UnprotectRequest", "unprotect", "InspectRequest", "InspectResult", "inspect",
           "DeidentifyRequest", "ReidentifyRequest", "RewriteResult", "deidentify",
           "reidentify"]

Progress = Callable[[dict], None]


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
        # workers first (forked small), then the medium is parsed in this process
        with Pool(request.workers or default_workers(), setup=worker_init,
                  args=(spec, decrypters, request.trust, None)) as pool:
            with open_medium(request.medium) as source:
                fsi = index_medium(source, decrypters=decrypters, trust=request.trust)
                return finish_validation(
                    source, fsi, decrypters=decrypters, trust=request.trust,
                    examiner=lambda tasks: pool.run(worker_examine, tasks), profile=profile,
                    on_progress=on_progress)


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


def extract(request: ExtractRequest, *, on_progress: Progress | None = None) -> ExtractReport:
    """Each plaintext file exists only as an anonymous inode until its checks pass; the
    folder appears only if at least one file was written. Progress: one event per file
    read, in bytes of the medium."""
    decrypters = list(request.decrypters)
    spec = medium_spec(request.medium)
    staging = StagingDir(request.output)
    with Job("extract").active(), staging as root:
        os.chmod(root, 0o700 if request.private else 0o755)
        with Pool(request.workers or default_workers(), setup=worker_init,
                  args=(spec, decrypters, request.trust,
                        {"staging": root, "include_invalid": request.include_invalid,
                         "private": request.private})) as pool:
            with open_medium(request.medium) as source:
                fsi = index_medium(source, decrypters=decrypters, trust=request.trust)
                if fsi.dicomdir_secure and not decrypters:
                    raise UsageError("the medium is encrypted; give --key/--cert or "
                                     "--password-env", path=request.medium, code="USAGE_NO_KEY")
                tasks = plan_extract(fsi)
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

def _open_input(path: str):
    try:
        return open(path, "rb", buffering=0)
    except FileNotFoundError as exc:
        raise UsageError("no such file", path=path, code="USAGE_NO_SUCH_FILE") from exc
    except IsADirectoryError as exc:
        raise UsageError("is a directory, not a file", path=path,
                         code="USAGE_NO_SUCH_FILE") from exc
    except OSError as exc:
        raise env_error(exc, path) from exc


def _sniff(f) -> bytes:
    head = f.read(132)
    f.seek(0)
    return head


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
    with Job("protect").active(), _open_input(src) as f:
        head = _sniff(f)
        if looks_enveloped(head):
            raise InputError("already a Secure DICOM File", path=src, code="INPUT_ALREADY_SECURE")
        if len(head) < 132 or head[128:132] != b"DICM":
            raise NotDicomError("not a DICOM Part 10 file (no DICM at byte 128)", path=src)
        size = os.fstat(f.fileno()).st_size
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
    with _open_input(src) as f:
        try:
            return open_secure_file(file_chunks(f), decrypters=list(decrypters), sink=sink,
                                    trust=trust)
        except OSError as exc:
            raise env_error(exc, src) from exc
        except MediasecError as exc:
            raise exc.with_path(src)


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


def unprotect(request: UnprotectRequest) -> SecureFileReport:
    """Decrypt and check; the plain file appears at ``output`` only when every check
    passed (until then it has no name on disk). A failed check raises."""
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
        with _open_input(src) as f:
            head = _sniff(f)
        if not looks_enveloped(head):
            if len(head) >= 132 and head[128:132] == b"DICM":
                return InspectResult(src, "plain DICOM Part 10 file")
            raise NotCMSError("neither a Secure DICOM File nor a DICOM Part 10 file", path=src)
        if request.decrypters:
            report = _open_report(src, request.decrypters, request.trust, None)
        else:
            with _open_input(src) as f:
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
