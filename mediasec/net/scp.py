"""Storage SCP over TLS: ``receive`` (pynetdicom, threads).

* **Bit for bit (Level 2).** Every storage SOP class is accepted with every transfer
  syntax; the dataset is stored exactly as received (``encoded_dataset``), behind a File
  Meta Information header for the accepted transfer syntax, as ``DIR/<SOP Instance UID>.dcm``.
* **Atomic and durable.** Each instance is written to an anonymous ``O_TMPFILE`` inode
  (``mediasec.io.fs.AtomicOutput``), fsynced, linked and renamed, and the folder fsynced
  *before* the C-STORE response goes out: an acknowledged instance survives ``kill -9``,
  and an interrupted one leaves no file at all.
* **Checks.** The bytes must read as DICOM with the SOP Class and Instance UIDs of the
  request (``mediasec.media.validate.examine_file``); an optional ``signature_check`` hook
  (dataset signatures, ``mediasec.sign`` when present) judges the Part 10 bytes. A failed
  check is refused (status 0xC000/0xA900) or, with ``quarantine``, stored under
  ``quarantine`` and refused.
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
  transient rejection). Memory per association is the instance being received (pynetdicom
  assembles one C-STORE at a time) plus its PDU buffer.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import socket
import ssl
import threading
from dataclasses import dataclass, field
from typing import Callable

from mediasec import __version__
from mediasec.errors import MediasecError, UsageError
from mediasec.io.fs import AtomicOutput, env_error
from mediasec.media.validate import content_ok, examine_file
from mediasec.net.tls import TLSConfig, explain_tls_failure, server_context, tls_facts
from mediasec.report import Finding, Outcome

__all__ = ["Receiver", "ReceiveOptions", "RECEIVE_SCHEMA", "SECURE_USE_ANSWER"]

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
    aet: str = "MEDIASEC"
    bind: str = "0.0.0.0"
    port: int = 2762
    allow_aets: tuple = ()
    allow_subjects: tuple = ()
    quarantine: str | None = None
    signature_check: Callable[[bytes], list] | None = None
    max_associations: int = 32
    handshake_timeout: float = 10.0
    acse_timeout: float = 30.0
    dimse_timeout: float = 120.0
    network_timeout: float = 120.0
    max_pdu: int = 0
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


class Receiver:
    """A running storage SCP; ``start()``, ``port``, ``stop(drain)``, ``report()``."""

    def __init__(self, tls: TLSConfig, opts: ReceiveOptions):
        out = os.path.abspath(opts.output)
        if not os.path.isdir(out):
            raise UsageError("output folder does not exist (make it first)", path=out,
                             code="USAGE_NO_OUTPUT_DIR")
        if opts.quarantine:
            os.makedirs(opts.quarantine, exist_ok=True)
        self.opts = opts
        self.out = out
        self.tls = tls
        self.ctx = server_context(tls)
        self.stats = _Stats()
        self.server = None
        self.ae = None

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
        req = event.request
        cls = str(req.AffectedSOPClassUID)
        uid = str(req.AffectedSOPInstanceUID)
        calling = event.assoc.requestor.ae_title.strip()
        rec = {"sop_instance_uid": uid, "sop_class_uid": cls, "calling_aet": calling,
               "transfer_syntax": str(event.context.transfer_syntax)}
        try:
            data = event.encoded_dataset(include_meta=True)
        except Exception as exc:  # noqa: BLE001 - pynetdicom could not frame the dataset
            return self._refuse(rec, 0xC000, "STORE_UNREADABLE", f"no dataset: {exc}")
        if not _UID.match(uid) or len(uid) > 64:
            return self._refuse(rec, 0xC000, "STORE_BAD_UID", "not a valid SOP Instance UID")
        findings = list(self._check(data, cls, uid))
        if self.opts.signature_check is not None:
            try:
                findings += list(self.opts.signature_check(data))
            except MediasecError as exc:
                findings.append(Finding(exc.code, Outcome.FAILED, exc.message))
        if not content_ok(findings) or any(f.outcome is Outcome.FAILED for f in findings):
            bad = next(f for f in findings if f.outcome is Outcome.FAILED)
            if self.opts.quarantine:
                try:
                    self._write(self.opts.quarantine, uid, data)
                    with self.stats.lock:
                        self.stats.quarantined += 1
                    rec["quarantined"] = True
                except MediasecError:
                    pass
            status = 0xA900 if bad.code == "STORE_UID_MISMATCH" else 0xC000
            return self._refuse(rec, status, bad.code, bad.message)
        try:
            path, dup = self._write(self.out, uid, data)
        except MediasecError as exc:
            return self._refuse(rec, 0xA700, exc.code, exc.message)
        rec.update(status="stored", path=os.path.relpath(path, self.out), size=len(data),
                   dimse_status=0)
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

    def _check(self, data: bytes, cls: str, uid: str):
        facts = examine_file([data], path=f"{uid}.dcm", size=len(data))
        yield from facts.findings
        if facts.kind != "plain" or facts.header is None:
            yield Finding("STORE_NOT_DICOM", Outcome.FAILED, "the dataset does not decode")
            return
        h = facts.header
        if h.sop_instance_uid != uid or (h.sop_class_uid and h.sop_class_uid != cls):
            yield Finding("STORE_UID_MISMATCH", Outcome.FAILED, "the dataset's SOP Class/"
                          "Instance UID differs from the C-STORE request's")

    def _write(self, folder: str, uid: str, data: bytes) -> tuple[str, int]:
        target = os.path.join(folder, f"{uid}.dcm")
        dup = 0
        if os.path.exists(target):
            with contextlib.suppress(OSError):
                with open(target, "rb") as f:
                    if f.read(len(data) + 1) == data:
                        return target, 1     # the same bytes again: already durable
            import hashlib
            target = os.path.join(folder, f"{uid}.{hashlib.sha256(data).hexdigest()[:12]}.dcm")
            dup = 1
        out = AtomicOutput(target, anonymous=True, mode=0o640)
        f = out.open()
        try:
            mv = memoryview(data)
            while mv:
                n = f.write(mv)
                mv = mv[n:]
            out.commit()           # fsync file, link, rename, fsync folder
        except OSError as exc:
            out.abort()
            raise env_error(exc, target) from exc
        except BaseException:
            out.abort()
            raise
        return target, dup

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
                    (evt.EVT_ESTABLISHED, self._on_established)]
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
        self.server = None

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
