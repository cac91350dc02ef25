"""Storage SCP over TLS: ``receive`` (pynetdicom, threads).

* **Bit for bit (Level 2).** Every storage SOP class is accepted with every transfer
  syntax; the dataset is stored exactly as received, behind a File Meta Information header
  for the accepted transfer syntax, as ``DIR/<SOP Instance UID>.dcm`` or, with
  ``fileset``, under a File ID made from its UIDs (``mediasec.media.received``), with a
  DICOMDIR written atomically when the receiver stops.
* **Bounded memory, atomic and durable.** The data set never sits in memory: each P-DATA
  fragment goes straight into an anonymous ``O_TMPFILE`` inode in the output folder
  (``_Spool``, installed per association as the DIMSE message's data set buffer - pynetdicom
  itself would either hold the whole data set in a ``BytesIO`` or, with its process-wide
  ``STORE_RECV_CHUNKED_DATASET``, write it to a *named* file in the system temp folder that
  a ``kill -9`` leaves behind). When the message is complete it is checked, fsynced, linked
  and renamed, and the folder fsynced, *before* the C-STORE response goes out: an
  acknowledged instance survives ``kill -9``, and an interrupted one leaves no file at all.
  Memory per association is one PDU (``max_pdu``, 256 KiB by default) plus pynetdicom's
  queue of received PDUs.
* **Checks.** The bytes must read as DICOM with the SOP Class and Instance UIDs of the
  request (``mediasec.media.validate.examine_file``, on the header); an optional
  ``signature_check`` hook (dataset signatures, ``mediasec.sign`` when present) gets the
  Part 10 file as a binary file object. A failed check is refused (status 0xC000/0xA900)
  or, with ``quarantine``, stored under ``quarantine`` and refused.
* **Who may connect.** The TLS layer requires a client certificate from the site CA (unless
  ``client_auth='optional'``); ``allow_aets`` and ``allow_subjects`` (certificate subject
  in RFC 4514 form, exact) are checked in A-ASSOCIATE-RQ and refused with A-ASSOCIATE-RJ
  (permanent, calling AE title not recognised).
* **Secure Use.** The Storage SOP Class Extended Negotiation is answered for every storage
  class asked: level 2, digital signatures level 3 (bit-preserving), no coercion.
* **Robustness.** ``SafeTLSServer`` accepts, then handshakes in the connection's own thread
  under a timeout, so a client that never completes its handshake stalls nobody; a
  handshake failure is logged as one line and the socket closed. ACSE/DIMSE/network
  timeouts end idle associations; ``max_associations`` bounds concurrency (excess gets a
  transient rejection). Each stored instance is handled under its own ``Job``; all
  state is on the ``StorageSCP`` object (no module globals).
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import logging
import os
import re
import socket
import ssl
import threading
from dataclasses import dataclass, field
from typing import Callable

from mediasec import __version__
from mediasec._job import Job
from mediasec.errors import MediasecError, UsageError
from mediasec.io.fs import AtomicOutput, env_error, fsync_dir
from mediasec.io.sources import read_fd_chunks
from mediasec.media.examine import examine_file
from mediasec.media.judge import content_ok
from mediasec.net._seam import quick_ack_reads, quiet_per_pdu_logging
from mediasec.net.tls import TLSConfig, explain_tls_failure, server_context, tls_facts
from mediasec.report import Finding, Outcome

__all__ = ["StorageSCP", "ReceiveOptions", "RECEIVE_SCHEMA", "SECURE_USE_ANSWER"]

RECEIVE_SCHEMA = "mediasec.receive/1"
#: Level 2 storage, digital signature level 3 (bit-preserving), element coercion 0 (none)
SECURE_USE_ANSWER = bytes([2, 0, 3, 0, 0, 0])
_UID = re.compile(r"[0-9]+(\.[0-9]+)*\Z")
LOG = logging.getLogger("mediasec.net.scp")


def _server_class(handshake_timeout: float, on_refused: Callable[[str, str, str], None]):
    from pynetdicom.transport import ThreadedAssociationServer

    class SafeTLSServer(ThreadedAssociationServer):
        """Handshake in the connection's thread with a timeout; log refusals."""

        daemon_threads = True

        def get_request(self):
            sock, address = self.socket.accept()
            with contextlib.suppress(OSError):   # the C-STORE response goes out at once
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if self.ssl_context:
                sock.settimeout(handshake_timeout)
                sock = self.ssl_context.wrap_socket(sock, server_side=True,
                                                    do_handshake_on_connect=False)
            return sock, address

        def finish_request(self, request, client_address):
            if isinstance(request, ssl.SSLSocket):
                try:
                    request.do_handshake()
                except (ssl.SSLError, OSError) as exc:
                    text = f"{getattr(exc, 'reason', '') or ''} {exc}"
                    if isinstance(exc, (socket.timeout, TimeoutError)):
                        code, msg = "TLS_HANDSHAKE_TIMEOUT", "no TLS handshake in time"
                    else:
                        code, msg = explain_tls_failure(text)
                    on_refused(f"{client_address[0]}:{client_address[1]}", code, msg)
                    with contextlib.suppress(OSError):
                        request.close()
                    return
                request.settimeout(None)
            super().finish_request(request, client_address)

        def handle_error(self, request, client_address):
            LOG.warning("connection from %s ended with an error", client_address)

    return SafeTLSServer


@dataclass
class ReceiveOptions:
    output: str
    fileset: bool = False
    aet: str = "MEDIASEC"
    bind: str = "0.0.0.0"
    port: int = 2762
    allow_aets: tuple = ()
    allow_subjects: tuple = ()
    quarantine: str | None = None
    signature_check: Callable | None = None     # binary file -> [Finding]
    max_associations: int = 32
    handshake_timeout: float = 10.0
    acse_timeout: float = 30.0
    dimse_timeout: float = 120.0
    network_timeout: float = 120.0
    max_pdu: int = 262144
    on_event: Callable[[dict], None] | None = None


@dataclass
class _Stats:
    lock: threading.Lock = field(default_factory=threading.Lock)
    stored: int = 0
    refused: int = 0
    quarantined: int = 0
    duplicates: int = 0
    associations: int = 0
    rejected: int = 0
    tls_refused: int = 0
    instances: list = field(default_factory=list)
    events: list = field(default_factory=list)


def _sha256(fd: int, size: int) -> str:
    h = hashlib.sha256()
    for chunk in read_fd_chunks(fd, size):
        h.update(chunk)
    return h.hexdigest()


class _Spool(io.BytesIO):
    """The data set buffer of one incoming DIMSE message (pynetdicom checks for a
    ``BytesIO``): a C-STORE data set goes to an anonymous file in the output folder,
    behind the File Meta Information, fragment by fragment; nothing is kept in memory.
    Any other message's data set (none we accept carries one) stays in memory."""

    def __init__(self, scp: "StorageSCP", message, assoc):
        super().__init__()
        self._scp = scp
        self._msg = message
        self._assoc = assoc
        self.out: AtomicOutput | None = None
        self.size = 0
        self.error: MediasecError | None = None
        self._in_memory = False
        self._head = 0                 # bytes of preamble and File Meta before the data set

    def write(self, data) -> int:   # type: ignore[override]
        if self._in_memory:
            return super().write(data)
        if self.out is None and self.error is None:
            if not self._start():
                self._in_memory = True
                return super().write(data)
        if self.error is not None:
            return len(data)          # refused once complete; the bytes are dropped
        mv = memoryview(data)
        try:
            while mv:
                n = os.write(self.out.fileno, mv)
                mv = mv[n:]
                self.size += n
        except OSError as exc:
            self.error = env_error(exc, self._scp.out)
            self.discard()
        return len(data)

    def _start(self) -> bool:
        from pynetdicom.dimse_messages import C_STORE_RQ
        from pynetdicom.dsutils import create_file_meta, encode_file_meta
        msg = self._msg
        if not isinstance(msg, C_STORE_RQ):
            return False
        try:
            cs = msg.command_set
            cx = self._assoc._accepted_cx[msg.context_id]
            head = b"\0" * 128 + b"DICM" + encode_file_meta(create_file_meta(
                sop_class_uid=cs.AffectedSOPClassUID,
                sop_instance_uid=cs.AffectedSOPInstanceUID,
                transfer_syntax=cx.transfer_syntax[0]))
        except Exception:  # noqa: BLE001 - a malformed command set: refused on completion
            self.error = MediasecError("the C-STORE request's UIDs do not make a File Meta "
                                       "Information header", code="STORE_BAD_UID")
            return True
        out = AtomicOutput(os.path.join(self._scp.out, "incoming.dcm"),
                           mode=0o640)
        try:
            out.open()
            self.out = out
            self.write(head)
            self._head = len(head)
        except MediasecError as exc:
            self.error = exc
            self.discard()
        return True

    def discard(self) -> None:
        if self.out is not None:
            self.out.abort()
            self.out = None

    def getvalue(self) -> bytes:   # type: ignore[override]
        """The data set read back from the file (pynetdicom's debug logging asks whether
        one is present; nothing of ours calls this: it costs the data set's size)."""
        if self.out is not None:
            return os.pread(self.out.fileno, max(0, self.size - self._head),
                            self._head)
        return super().getvalue()


class StorageSCP:
    """A running storage SCP; ``start()``, ``port``, ``stop(drain)``, ``finish()``."""

    def __init__(self, tls: TLSConfig, opts: ReceiveOptions):
        out = os.path.abspath(opts.output)
        if not os.path.isdir(out):
            raise UsageError("output folder does not exist (make it first)", path=out,
                             code="USAGE_NO_OUTPUT_DIR")
        if opts.quarantine:
            try:
                os.makedirs(opts.quarantine, exist_ok=True)
            except OSError as exc:
                raise env_error(exc, opts.quarantine) from exc
        self.opts = opts
        self.out = out
        self.tls = tls
        self.ctx = server_context(tls)
        self.stats = _Stats()
        self.server = None
        self.ae = None
        # a name is chosen and linked under its stripe's lock (two associations may store
        # the same instance at once)
        self._name_locks = [threading.Lock() for _ in range(64)]

    # -- events ------------------------------------------------------------------------------
    def _event(self, **kw) -> None:
        with self.stats.lock:
            self.stats.events.append(kw)
        if self.opts.on_event:
            self.opts.on_event(kw)

    def _tls_refused(self, peer: str, code: str, msg: str) -> None:
        with self.stats.lock:
            self.stats.tls_refused += 1
        self._event(event="tls_refused", peer=peer, code=code, message=msg)

    def _subject(self, assoc) -> str | None:
        with contextlib.suppress(AttributeError):
            return tls_facts(assoc.dul.socket.socket).get("peer_subject")
        return None

    def _on_requested(self, event) -> None:
        assoc = event.assoc
        calling = str(assoc.requestor.primitive.calling_ae_title or "").strip()
        subject = self._subject(assoc)
        why = None
        if self.opts.allow_aets and calling not in self.opts.allow_aets:
            why = ("NET_AET_NOT_ALLOWED", "calling AE title not on the allow-list")
        elif self.opts.allow_subjects and subject not in self.opts.allow_subjects:
            why = ("NET_SUBJECT_NOT_ALLOWED", "certificate subject not on the allow-list")
        if why:
            with self.stats.lock:
                self.stats.rejected += 1
            self._event(event="rejected", calling_aet=calling, subject=subject,
                        code=why[0], message=why[1])
            # rejected-permanent, service-user, calling AE title not recognised
            assoc.acse.send_reject(0x01, 0x01, 0x03)
            assoc.kill()      # as pynetdicom's own rejections do: lets the DUL send the RJ
            return
        self._install_spool(assoc)

    def _install_spool(self, assoc) -> None:
        """Give each DIMSE message of this association a ``_Spool`` as its data set
        buffer, before its first fragment is decoded (this association only)."""
        from pynetdicom.dimse_messages import DIMSEMessage
        quiet_per_pdu_logging(assoc, dimse_recv=True)
        quick_ack_reads(assoc)
        dimse = assoc.dimse
        receive = dimse.receive_primitive

        def receive_primitive(primitive):
            if dimse.message is None:
                msg = DIMSEMessage()
                msg.data_set = _Spool(self, msg, assoc)
                dimse.message = msg
            receive(primitive)
        dimse.receive_primitive = receive_primitive

    def _on_closed(self, event) -> None:
        """A half-received data set (association aborted or lost) is freed: its anonymous
        file never had a name."""
        msg = getattr(event.assoc.dimse, "message", None)
        spool = getattr(msg, "data_set", None)
        if isinstance(spool, _Spool):
            spool.discard()

    def _on_established(self, event) -> None:
        with self.stats.lock:
            self.stats.associations += 1
        assoc = event.assoc
        self._event(event="association", calling_aet=assoc.requestor.ae_title.strip(),
                    **tls_facts(assoc.dul.socket.socket))

    def _on_sop_extended(self, event) -> dict:
        from pynetdicom.sop_class import uid_to_service_class
        from pynetdicom.service_class import StorageServiceClass
        answer = {}
        for uid in event.app_info:
            with contextlib.suppress(Exception):
                if issubclass(uid_to_service_class(uid), StorageServiceClass):
                    answer[uid] = SECURE_USE_ANSWER
        return answer

    def _on_store(self, event) -> int:
        with Job("receive").active():
            spool = event.request.DataSet
            if not isinstance(spool, _Spool) or spool.out is None and spool.error is None:
                # not spooled (no hook on this association): copy what pynetdicom holds
                data = event.encoded_dataset(include_meta=True)
                spool = _Spool(self, None, None)
                spool.out = AtomicOutput(os.path.join(self.out, "incoming.dcm"),
                                         mode=0o640)
                try:
                    spool.out.open()
                except MediasecError as exc:
                    spool.out, spool.error = None, exc
                else:
                    spool.write(data)
            try:
                return self._store(event, spool)
            finally:
                spool.discard()

    def _store(self, event, spool: _Spool) -> int:
        req = event.request
        cls = str(req.AffectedSOPClassUID)
        uid = str(req.AffectedSOPInstanceUID)
        calling = event.assoc.requestor.ae_title.strip()
        rec = {"sop_instance_uid": uid, "sop_class_uid": cls, "calling_aet": calling,
               "transfer_syntax": str(event.context.transfer_syntax)}
        if spool.error is not None:
            status = 0xA700 if spool.error.code.startswith("ENV") else 0xC000
            return self._refuse(rec, status, spool.error.code, spool.error.message)
        if not _UID.match(uid) or len(uid) > 64:
            return self._refuse(rec, 0xC000, "STORE_BAD_UID", "not a valid SOP Instance UID")
        fd, size = spool.out.fileno, spool.size
        header, findings = self._check(fd, size, cls, uid)
        if self.opts.signature_check is not None:
            try:
                with os.fdopen(os.dup(fd), "rb") as f:
                    findings += list(self.opts.signature_check(f))
            except MediasecError as exc:
                findings.append(Finding(exc.code, Outcome.FAILED, exc.message))
        if not content_ok(findings) or any(f.outcome is Outcome.FAILED for f in findings):
            bad = next(f for f in findings if f.outcome is Outcome.FAILED)
            if self.opts.quarantine:
                try:
                    self._quarantine(uid, fd, size)
                    with self.stats.lock:
                        self.stats.quarantined += 1
                    rec["quarantined"] = True
                except MediasecError:
                    pass
            status = 0xA900 if bad.code == "STORE_UID_MISMATCH" else 0xC000
            return self._refuse(rec, status, bad.code, bad.message)
        try:
            path, dup = self._commit(spool, uid, header)
        except MediasecError as exc:
            return self._refuse(rec, 0xA700, exc.code, exc.message)
        rec.update(status="stored", path=os.path.relpath(path, self.out).replace(os.sep, "/"),
                   size=size, dimse_status=0)
        with self.stats.lock:
            self.stats.stored += 1
            self.stats.duplicates += dup
            self.stats.instances.append(rec)
        return 0x0000

    def _refuse(self, rec: dict, status: int, code: str, message: str) -> int:
        rec.update(status="refused", dimse_status=status,
                   reasons=[{"code": code, "outcome": "failed", "message": message}])
        with self.stats.lock:
            self.stats.refused += 1
            self.stats.instances.append(rec)
        self._event(event="refused", sop_instance_uid=rec["sop_instance_uid"], code=code,
                    message=message)
        return status

    def _check(self, fd: int, size: int, cls: str, uid: str):
        try:
            facts = examine_file(read_fd_chunks(fd, size), path=f"{uid}.dcm", size=size,
                                 header_only=True)
        except MediasecError as exc:
            return None, [Finding(exc.code, Outcome.FAILED, exc.message)]
        findings = list(facts.findings)
        h = facts.header
        if facts.kind != "plain" or h is None:
            findings.append(Finding("STORE_NOT_DICOM", Outcome.FAILED,
                                    "the dataset does not decode"))
        elif h.sop_instance_uid != uid or (h.sop_class_uid and h.sop_class_uid != cls):
            findings.append(Finding("STORE_UID_MISMATCH", Outcome.FAILED, "the dataset's SOP "
                                    "Class/Instance UID differs from the C-STORE request's"))
        return h, findings

    # -- naming and committing ---------------------------------------------------------------
    def _same(self, path: str, fd: int, size: int, sha: list) -> bool:
        try:
            if os.path.getsize(path) != size:
                return False
            if not sha:
                sha.append(_sha256(fd, size))
            rfd = os.open(path, os.O_RDONLY)
            try:
                return _sha256(rfd, size) == sha[0]
            finally:
                os.close(rfd)
        except OSError:
            return False

    def _candidates(self, uid: str, header, fd: int, size: int, sha: list):
        if self.opts.fileset:
            from mediasec.media.received import file_id_candidates, file_id_for
            study = header.key("study_uid") if header else None
            series = header.key("series_uid") if header else None
            yield os.path.join(self.out, *file_id_for(study, series, uid))
            if not sha:
                sha.append(_sha256(fd, size))
            for fid in list(file_id_candidates(study, series, uid, sha[0]))[1:]:
                yield os.path.join(self.out, *fid)
            return
        yield os.path.join(self.out, f"{uid}.dcm")
        if not sha:
            sha.append(_sha256(fd, size))
        yield os.path.join(self.out, f"{uid}.{sha[0][:12]}.dcm")

    def _commit(self, spool: _Spool, uid: str, header) -> tuple[str, int]:
        """Link the spooled file under its name (or find the same bytes already there)."""
        out, fd, size = spool.out, spool.out.fileno, spool.size
        try:
            os.fsync(fd)                     # outside the lock; commit's fsync is then cheap
        except OSError as exc:
            raise env_error(exc, self.out) from exc
        sha: list = []
        for target in self._candidates(uid, header, fd, size, sha):
            with self._name_locks[hash(target) % len(self._name_locks)]:
                if not os.path.lexists(target):
                    self._make_folders(os.path.dirname(target))
                    out.target = target
                    try:
                        # fsync, link the complete file under its name in one step (never
                        # a partial name, even for a kill -9 right then), fsync the folder
                        out.commit(exclusive=out.anonymous)
                    except FileExistsError:
                        pass                 # appeared meanwhile: compare it below
                    else:
                        spool.out = None
                        return target, 0
                if self._same(target, fd, size, sha):
                    return target, 1         # the same bytes again: already durable
        raise MediasecError("no free name for the instance", code="STORE_NAME")

    def _make_folders(self, folder: str) -> None:
        missing = []
        while not os.path.isdir(folder):
            missing.append(folder)
            folder = os.path.dirname(folder)
        try:
            for f in reversed(missing):
                try:
                    os.mkdir(f, 0o750)
                except FileExistsError:
                    continue
                fsync_dir(os.path.dirname(f))
        except OSError as exc:
            raise env_error(exc, folder) from exc

    def _quarantine(self, uid: str, fd: int, size: int) -> None:
        target = os.path.join(self.opts.quarantine, f"{uid}.dcm")
        out = AtomicOutput(target, mode=0o640)
        f = out.open()
        try:
            for chunk in read_fd_chunks(fd, size):
                f.write(chunk)
            out.commit()
        except OSError as exc:
            out.abort()
            raise env_error(exc, target) from exc
        except BaseException:
            out.abort()
            raise

    # -- the File-set's DICOMDIR ---------------------------------------------------------------
    def _write_dicomdir(self) -> dict:
        """Index every instance under the root and write its DICOMDIR (atomically)."""
        import uuid

        from mediasec._data import media_profile
        from mediasec.dicom.dicomdir import decode_dicomdir
        from mediasec.dicom.fileid import is_valid_file_id
        from mediasec.dicom.scan import scan_file
        from mediasec.errors import InputError, NotDicomError
        from mediasec.media.fileset import narrow_tags, wanted_tags
        from mediasec.media.received import directory_for

        profile = media_profile("STD-GEN-USB-JPEG")
        tags, narrow = wanted_tags(profile), narrow_tags(profile)
        target = os.path.join(self.out, "DICOMDIR")
        fileset_uid = None
        with contextlib.suppress(OSError, MediasecError):
            with open(target, "rb") as f:
                fileset_uid = decode_dicomdir(f.read(256 << 20), path=target).fileset_uid
        fileset_uid = fileset_uid or f"2.25.{uuid.uuid4().int}"
        quarantine = os.path.realpath(self.opts.quarantine) if self.opts.quarantine else None
        scans, skipped = [], []
        for folder, dirs, files in os.walk(self.out):
            dirs[:] = sorted(d for d in dirs if not d.startswith(".")
                             and os.path.realpath(os.path.join(folder, d)) != quarantine)
            for name in sorted(files):
                path = os.path.join(folder, name)
                rel = os.path.relpath(path, self.out).replace(os.sep, "/")
                if name.startswith(".") or rel == "DICOMDIR":
                    continue
                if not is_valid_file_id(rel.split("/")):
                    skipped.append({"path": rel, "code": "FILESET_NOT_FILE_ID",
                                    "message": "not a File ID: not in the DICOMDIR"})
                    continue
                try:
                    with open(path, "rb") as f:
                        scans.append(scan_file(f, os.fstat(f.fileno()).st_size, source=rel,
                                               tags=tags, narrow=narrow))
                except (NotDicomError, InputError) as exc:
                    skipped.append({"path": rel, "code": exc.code, "message": exc.message})
                except OSError as exc:
                    raise env_error(exc, path) from exc

        def same(a, b) -> bool:
            fa = os.open(os.path.join(self.out, a.source), os.O_RDONLY)
            fb = os.open(os.path.join(self.out, b.source), os.O_RDONLY)
            try:
                return a.size == b.size and _sha256(fa, a.size) == _sha256(fb, b.size)
            finally:
                os.close(fa)
                os.close(fb)
        if not scans:
            return {"dicomdir": None, "instances": 0, "skipped": skipped}
        data, model, conflicts = directory_for(scans, profile=profile,
                                               fileset_uid=fileset_uid, same_content=same)
        skipped += [{"path": c, "code": "FILESET_DUPLICATE_UID", "message": "another file "
                     "holds this SOP Instance UID with other content: kept in the folder, "
                     "not in the DICOMDIR"} for c in conflicts]
        out = AtomicOutput(target, mode=0o640)
        with out as f:
            try:
                f.write(data)
            except OSError as exc:
                raise env_error(exc, target) from exc
            out.commit()
        return {"dicomdir": "DICOMDIR", "fileset_uid": fileset_uid,
                "instances": len(model.instances), "size": len(data),
                "made_up": [m.to_dict() for m in model.made_up],
                "duplicates": [list(d) for d in model.duplicates],
                "skipped": skipped + [s.to_dict() for s in model.skipped]}

    # -- lifecycle ---------------------------------------------------------------------------
    def start(self):
        from pynetdicom import AE, ALL_TRANSFER_SYNTAXES, StoragePresentationContexts, evt
        from pynetdicom.sop_class import Verification

        o = self.opts
        ae = AE(ae_title=o.aet)
        ae.maximum_associations = o.max_associations
        ae.acse_timeout = o.acse_timeout
        ae.dimse_timeout = o.dimse_timeout
        ae.network_timeout = o.network_timeout
        ae.maximum_pdu_size = o.max_pdu
        for cx in StoragePresentationContexts:
            ae.add_supported_context(cx.abstract_syntax, ALL_TRANSFER_SYNTAXES)
        ae.add_supported_context(Verification, ALL_TRANSFER_SYNTAXES[:4])
        handlers = [(evt.EVT_C_STORE, self._on_store),
                    (evt.EVT_SOP_EXTENDED, self._on_sop_extended),
                    (evt.EVT_REQUESTED, self._on_requested),
                    (evt.EVT_ESTABLISHED, self._on_established),
                    (evt.EVT_CONN_CLOSE, self._on_closed)]
        server_cls = _server_class(o.handshake_timeout, self._tls_refused)
        try:
            self.server = ae.make_server((o.bind, o.port), ssl_context=self.ctx,
                                         evt_handlers=handlers, server_class=server_cls)
        except OSError as exc:
            raise env_error(exc, f"{o.bind}:{o.port}") from exc
        ae._servers.append(self.server)
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.2},
                         name="mediasec-receive", daemon=True).start()
        self.ae = ae
        return self

    @property
    def port(self) -> int:
        return self.server.server_address[1]

    def stop(self, drain: float = 30.0) -> None:
        """Stop accepting; let running associations finish for up to ``drain`` seconds,
        then abort the rest. Every acknowledged instance is already on disk."""
        import time
        if self.server is None:
            return
        self.server.shutdown()
        deadline = time.monotonic() + drain
        while self.server.active_associations and time.monotonic() < deadline:
            time.sleep(0.05)
        for assoc in list(self.server.active_associations):
            with contextlib.suppress(Exception):
                assoc.abort()
        with contextlib.suppress(Exception):
            self.server.server_close()
        self.server = None

    def finish(self) -> dict:
        """After ``stop``: the File-set's DICOMDIR (``fileset``), then the summary."""
        fileset = None
        if self.opts.fileset:
            with Job("receive-dicomdir").active():
                try:
                    fileset = self._write_dicomdir()
                except MediasecError as exc:
                    fileset = {"dicomdir": None, "error": {"code": exc.code,
                                                           "message": exc.message}}
                    self.fileset_error = exc
        doc = self.report()
        if fileset is not None:
            doc["fileset"] = fileset
        return doc

    fileset_error: MediasecError | None = None

    def report(self) -> dict:
        s = self.stats
        with s.lock:
            return {"schema": RECEIVE_SCHEMA, "version": __version__,
                    "output": self.out,
                    "counts": {"stored": s.stored, "refused": s.refused,
                               "quarantined": s.quarantined, "duplicates": s.duplicates,
                               "associations": s.associations,
                               "rejected_associations": s.rejected,
                               "tls_refused": s.tls_refused},
                    "instances": list(s.instances), "events": list(s.events)}
