"""Storage SCU over TLS: ``echo`` and ``send`` (pynetdicom; no DIMSE of ours).

``mediasec.api.send`` opens the SOURCEs with the medium readers (an ISO image, a File-set
folder, any folder, or files) and plans them as ``extract`` does; ``send_items`` then runs,
for each DICOM file, the same checks as ``verify``/``extract``
(``mediasec.media.extract.extract_file``): a Secure DICOM File is decrypted into an
anonymous in-memory file (``memfd``, never on disk) and is sent only if every check passed
(``include_invalid`` sends a fully decrypted file that failed a check anyway).

* Presentation contexts come from the files' SOP classes and transfer syntaxes (from the
  DICOMDIR records, or a header read when there are none): one context per class and
  original transfer syntax, plus one per class offering Explicit/Implicit VR Little Endian
  as a fallback. The original bytes go out unchanged (pynetdicom's chunked send streams the
  dataset as stored); an instance is converted only when the peer refused its original
  transfer syntax and accepted a fallback, and only between uncompressed syntaxes.
* Patient reconciliation (``mapping``/``patient``): the dataset is rewritten once with the
  new Patient ID and an Original Attributes Sequence item (``mediasec.media.reconcile``).
* Storage SOP Class Extended Negotiation (PS3.4 B.3.1): we ask each class for level 2
  storage, bit-preserving signatures; the peer's answer is reported per class.
* Resumable: ``state`` (a JSON-lines file, fsynced per line) records each confirmed
  instance as peer, SOP Instance UID and the SHA-256 of the bytes sent - nothing else. A
  re-run skips what the same peer already confirmed with the same bytes.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import io
import json
import os
import re
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone

from mediasec import __version__
from mediasec.errors import InputError, MediasecError, PeerError, UsageError
from mediasec.io.fs import env_error, fsync_dir
from mediasec.media.extract import extract_file
from mediasec.net._seam import (explain_association, pynetdicom_errors, quick_ack_reads,
                                quiet_per_pdu_logging)
from mediasec.net.tls import DEFAULT_PORT, TLSConfig, check_peer_certificate, client_context, \
    tls_facts
from mediasec.report import Outcome

__all__ = ["Peer", "parse_peer", "echo", "send_items", "SendItem", "SendOptions", "Timeouts",
           "SEND_SCHEMA", "ECHO_SCHEMA",
           "SECURE_USE_REQUEST", "decode_secure_use"]

SEND_SCHEMA = "mediasec.send/1"
ECHO_SCHEMA = "mediasec.echo/1"
_AET = re.compile(r"[\x20-\x7e]{1,16}\Z")
ELE, ILE = "1.2.840.10008.1.2.1", "1.2.840.10008.1.2"
_UNCOMPRESSED = {ELE, ILE, "1.2.840.10008.1.2.2", "1.2.840.10008.1.2.1.99"}
#: SCU's Storage SOP Class Extended Negotiation (PS3.4 B.3.1.1): level of support 3 (SCU
#: only), digital signature level 0, element coercion 2 (not applicable) - the SCP answers
SECURE_USE_REQUEST = bytes([3, 0, 0, 0, 2, 0])


@dataclass(frozen=True)
class Peer:
    aet: str
    host: str
    port: int

    def __str__(self) -> str:
        return f"{self.aet}@{self.host}:{self.port}"


def parse_peer(text: str) -> Peer:
    """``AET@HOST[:PORT]`` (port 2762 by default; ``[v6]`` literals allowed)."""
    aet, at, rest = text.rpartition("@")
    if not at or not aet or not rest:
        raise UsageError(f"--to {text!r}: expected AET@HOST:PORT", code="USAGE_PEER")
    if not _AET.match(aet) or aet.strip() != aet or "\\" in aet:
        raise UsageError(f"--to {text!r}: an AE title is 1-16 printable characters",
                         code="USAGE_PEER")
    m = re.fullmatch(r"\[([0-9A-Fa-f:.]+)\](?::(\d+))?|([^:\[\]]+)(?::(\d+))?", rest)
    if not m:
        raise UsageError(f"--to {text!r}: expected AET@HOST:PORT", code="USAGE_PEER")
    host = m.group(1) or m.group(3)
    port = int(m.group(2) or m.group(4) or DEFAULT_PORT)
    if not 0 < port < 65536:
        raise UsageError(f"--to {text!r}: port out of range", code="USAGE_PEER")
    return Peer(aet, host, port)


@dataclass(frozen=True)
class Timeouts:
    connect: float = 15.0      # TCP connect + TLS handshake
    acse: float = 30.0
    dimse: float = 120.0
    network: float = 120.0


def _ae(calling_aet: str, t: Timeouts):
    from pynetdicom import AE
    ae = AE(ae_title=calling_aet)
    ae.connection_timeout = t.connect
    ae.acse_timeout = t.acse
    ae.dimse_timeout = t.dimse
    ae.network_timeout = t.network
    return ae


def _socket(assoc):
    with contextlib.suppress(AttributeError):
        return assoc.dul.socket.socket
    return None


def _no_delay(sock) -> None:
    """Send each PDU at once (pynetdicom leaves Nagle's algorithm on: the small last
    fragment of a data set then waits for the peer's delayed ACK, up to 40 ms an instance)."""
    import socket
    with contextlib.suppress(OSError, AttributeError):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


def decode_secure_use(info: bytes | None) -> dict:
    """The SCP's Storage SOP Class Extended Negotiation answer, in words."""
    if not info:
        return {"answered": False, "note": "no statement; dataset signatures may not survive"}
    b = bytes(info) + b"\0" * 6
    levels = {0: "level 0 (storage of the elements the SOP class requires)",
              1: "level 1 (Type 1 and 2 elements kept; others may be discarded)",
              2: "level 2 (all elements kept)", 3: "n/a (SCU only)"}
    sig = {0: "unspecified", 1: "signature level 1 (may not preserve signatures)",
           2: "signature level 2 (validates signatures, may replace them)",
           3: "signature level 3 (bit-preserving: signatures survive)"}
    coerce = {0: "does not coerce elements", 1: "may coerce elements", 2: "n/a"}
    return {"answered": True, "level_of_support": b[0], "digital_signature": b[2],
            "element_coercion": b[4],
            "note": f"{levels.get(b[0], f'level {b[0]}')}, {sig.get(b[2], f'{b[2]}')}, "
                    f"{coerce.get(b[4], f'{b[4]}')}"}


def _associate(ae, peer: Peer, tls: TLSConfig, *, ext_neg=None):
    """An established association over TLS, or ``PeerError`` saying why not."""
    ctx = client_context(tls)
    with pynetdicom_errors(str(peer)) as cap:
        assoc = ae.associate(peer.host, peer.port, ae_title=peer.aet,
                             tls_args=(ctx, peer.host if tls.check_hostname else None),
                             ext_neg=ext_neg or None)
        if not assoc.is_established:
            raise explain_association(assoc, cap, str(peer))
    quiet_per_pdu_logging(assoc)
    sock = _socket(assoc)
    _no_delay(sock)
    quick_ack_reads(assoc)
    facts = tls_facts(sock)
    try:
        check_peer_certificate(sock.getpeercert(binary_form=True) if sock else None,
                               tls.profile)
    except MediasecError as exc:
        assoc.abort()
        raise PeerError(f"TLS refused: {exc.message}", path=str(peer), code=exc.code) from exc
    return assoc, facts


def echo(peer: Peer, tls: TLSConfig, *, calling_aet: str = "MEDIASEC",
         timeouts: Timeouts = Timeouts()) -> dict:
    """C-ECHO over TLS: ``mediasec.echo/1``; ``PeerError`` when no association."""
    from pynetdicom.sop_class import Verification
    ae = _ae(calling_aet, timeouts)
    ae.add_requested_context(Verification)
    t0 = time.monotonic()
    assoc, facts = _associate(ae, peer, tls)
    try:
        with pynetdicom_errors(str(peer)):
            status = assoc.send_c_echo()
    finally:
        with contextlib.suppress(Exception):
            assoc.release()
    code = int(getattr(status, "Status", -1)) if status is not None and status else -1
    if code != 0:
        raise PeerError("C-ECHO failed" + (f": status 0x{code:04X}" if code >= 0 else
                                           ": no response"), path=str(peer),
                        code="NET_ECHO_FAILED")
    return {"schema": ECHO_SCHEMA, "version": __version__, "peer": _peer_dict(peer),
            "tls": facts, "status": code, "seconds": round(time.monotonic() - t0, 3)}


def _peer_dict(peer: Peer) -> dict:
    return {"aet": peer.aet, "host": peer.host, "port": peer.port}


# -- in-memory files ---------------------------------------------------------------------------

class _HeldFile:
    """A file we hold a descriptor of, sent through ``/proc/self/fd/N`` (the same inode
    whatever happens to a name); nothing to undo on abort."""

    fd: int

    def abort(self) -> None:
        pass

    @property
    def path(self) -> str:
        return f"/proc/self/fd/{self.fd}"

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


class _MemOutput(_HeldFile):
    """``extract_file``'s output: an anonymous in-memory file (never on disk)."""

    def __init__(self):
        self.fd = os.memfd_create("mediasec-send", os.MFD_CLOEXEC)
        self.committed = False
        self.sha = hashlib.sha256()

    def write(self, mv) -> None:
        self.sha.update(mv)
        mv = memoryview(mv)
        while mv:
            n = os.write(self.fd, mv)
            mv = mv[n:]

    def commit(self) -> None:
        self.committed = True

    def hexdigest(self) -> str:
        return self.sha.hexdigest()

    def changed(self) -> bool:
        return False


class _LocalFile(_HeldFile):
    """A plain file on this machine, sent from where it is (no copy): checked through the
    descriptor we hold, sent through ``/proc/self/fd/N`` (the same inode, even if the name
    is replaced meanwhile) and compared after sending (``changed``: written to meanwhile)."""

    def __init__(self, path: str):
        self.fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
        self._stat = self._key()
        self.sha: str | None = None

    def _key(self):
        st = os.fstat(self.fd)
        return (st.st_size, st.st_mtime_ns, st.st_ctime_ns)

    @property
    def size(self) -> int:
        return self._stat[0]

    def write(self, mv) -> None:       # extract_file's output: the bytes are already here
        pass

    def commit(self) -> None:
        pass

    def hexdigest(self) -> str:
        return self.sha

    def changed(self) -> bool:
        try:
            return self._key() != self._stat
        except OSError:
            return True


def _memfd_from(data: bytes) -> _MemOutput:
    out = _MemOutput()
    out.write(data)
    out.commit()
    return out


# -- the state file ----------------------------------------------------------------------------

class SendState:
    """Confirmed instances, one JSON line each: peer, SOP Instance UID, SHA-256 of the
    bytes sent. No patient data. Appended and fsynced after each confirmation."""

    def __init__(self, path: str | None, peer: Peer):
        self.path = path
        self.peer = str(peer)
        self.done: set[tuple[str, str]] = set()
        self._f = None
        if path is None:
            return
        try:
            with open(path, "r", encoding="utf-8") as f:
                for n, line in enumerate(f, 1):
                    line = line.strip()
                    if not line:
                        continue
                    try:
                        rec = json.loads(line)
                        if rec.get("peer") == self.peer:
                            self.done.add((rec["sop_instance_uid"], rec["sha256"]))
                    except (ValueError, KeyError, TypeError, AttributeError):
                        # a line cut by a crash at the very end is expected; skip it
                        continue
        except FileNotFoundError:
            pass
        except OSError as exc:
            raise env_error(exc, path) from exc
        try:
            self._f = open(path, "a", encoding="utf-8")
            fsync_dir(os.path.dirname(os.path.abspath(path)))
        except OSError as exc:
            raise env_error(exc, path) from exc

    def confirmed(self, uid: str, sha: str) -> bool:
        return (uid, sha) in self.done

    def record(self, uid: str, sha: str) -> None:
        self.done.add((uid, sha))
        if self._f is None:
            return
        try:
            self._f.write(json.dumps({"peer": self.peer, "sop_instance_uid": uid,
                                      "sha256": sha}) + "\n")
            self._f.flush()
            os.fsync(self._f.fileno())
        except OSError as exc:
            raise env_error(exc, self.path) from exc

    def close(self) -> None:
        if self._f is not None:
            self._f.close()
            self._f = None


# -- send --------------------------------------------------------------------------------------

@dataclass(frozen=True)
class SendItem:
    """One file to send: where to read it (``source.open(task.handle)``), its planned
    checks (``task``, a ``media.extract.ExtractTask``) and what its header says."""

    source: object
    task: object
    sop_class: str | None
    sop_instance: str | None
    ts: str | None
    local_path: str | None = None      # the file on this machine (folders, named files)


@dataclass
class SendOptions:
    calling_aet: str = "MEDIASEC"
    decrypters: tuple = ()
    trust: object = None
    include_invalid: bool = False
    mapping: dict | None = None                # old id -> PatientMapping
    patient: object = None                     # PatientMapping for every instance
    state_path: str | None = None
    timeouts: Timeouts = field(default_factory=Timeouts)
    now: datetime | None = None
    max_pdu: int = 0                           # 0: unlimited


def _contexts(items: list[SendItem]):
    from pynetdicom.presentation import build_context
    pairs: dict[str, list[str]] = {}
    for it in items:
        if it.sop_class and it.ts:
            lst = pairs.setdefault(it.sop_class, [])
            if it.ts not in lst:
                lst.append(it.ts)
    cxs = []
    for cls, tss in pairs.items():
        for ts in tss:
            cxs.append(build_context(cls, [ts]))
        cxs.append(build_context(cls, [ELE, ILE]))
    if len(cxs) > 128:
        raise UsageError(f"the files need {len(cxs)} presentation contexts; one association "
                         "carries at most 128 - send fewer SOP classes/transfer syntaxes at "
                         "a time", code="USAGE_TOO_MANY_CONTEXTS")
    return cxs, list(pairs)


def _accepted(assoc) -> dict[tuple[str, str], object]:
    return {(cx.abstract_syntax, cx.transfer_syntax[0]): cx
            for cx in assoc.accepted_contexts}


def _convert(mem: _MemOutput, target_ts: str) -> _MemOutput:
    import pydicom
    with open(mem.path, "rb") as f:
        ds = pydicom.dcmread(f)
    ds.file_meta.TransferSyntaxUID = target_ts
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True, implicit_vr=target_ts == ILE,
               little_endian=True)
    return _memfd_from(buf.getvalue())


def _reconcile(mem: _MemOutput, opts: SendOptions) -> tuple[_MemOutput | None, dict, str | None]:
    """The mapped copy (or None: unchanged), a report entry, or a failure message."""
    import pydicom

    from mediasec.media.reconcile import reconcile_patient
    with open(mem.path, "rb") as f:
        ds = pydicom.dcmread(f)
    if opts.patient is not None:
        m = opts.patient
    else:
        old = str(ds.get("PatientID", ""))
        m = (opts.mapping or {}).get(old)
        if m is None:
            return None, {}, "its Patient ID is not in the map (--map-patient-id): not sent"
    changed = reconcile_patient(ds, m, when=opts.now or datetime.now(timezone.utc),
                                system=f"mediasec {__version__}")
    if not changed:
        return None, {"changed": []}, None
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)      # same transfer syntax as read
    return _memfd_from(buf.getvalue()), {"changed": changed}, None


def _status_word(status) -> int | None:
    if status is None or not status or "Status" not in status:
        return None
    return int(status.Status)


def send_items(items: list[SendItem], peer: Peer, tls: TLSConfig, opts: SendOptions, *,
               notes: list[dict] = (), on_progress=None) -> dict:
    """Send ``items`` (planned by ``mediasec.api.send``); the ``mediasec.send/1`` document.

    Raises ``PeerError`` when no association can be made (nothing sent). A lost association
    mid-way reports each instance not yet confirmed as failed (``NET_ASSOCIATION_LOST``).
    ``on_progress`` gets ``{"event": "progress", "done_bytes", "total_bytes", "file"}``
    after each instance (bytes of the sources read).
    """
    from pynetdicom import _config
    from pynetdicom.pdu_primitives import SOPClassExtendedNegotiation

    results: list[dict] = list(notes)
    t0 = time.monotonic()
    sent_bytes = 0
    if not items:
        raise InputError("no DICOM instances to send", code="SEND_NOTHING")
    contexts, classes = _contexts(items)
    state = SendState(opts.state_path, peer)
    try:
        ae = _ae(opts.calling_aet, opts.timeouts)
        ae.maximum_pdu_size = opts.max_pdu
        ae.requested_contexts = contexts
        ext = []
        for cls in classes:
            item = SOPClassExtendedNegotiation()
            item.sop_class_uid = cls
            item.service_class_application_information = SECURE_USE_REQUEST
            ext.append(item)
        # stream the stored bytes, no re-encoding. pynetdicom's switch is process-wide; every
        # send of ours wants it on, so it is set and left set (threads may send at once)
        _config.STORE_SEND_CHUNKED_DATASET = True
        assoc, facts = _associate(ae, peer, tls, ext_neg=ext)
        try:
            offered = assoc.acceptor.sop_class_extended
            secure_use = {cls: decode_secure_use(offered.get(cls)) for cls in classes}
            accepted = _accepted(assoc)
            lost = None
            total = sum(it.task.size for it in items)
            done = 0
            for it, prepared in _prepared_ahead(items, accepted, opts):
                if lost is None and not assoc.is_established:
                    lost = "the association was lost before this instance was sent"
                r, n = _transmit(assoc, prepared, it, state, peer, lost)
                sent_bytes += n
                if r.get("_lost"):
                    lost = r.pop("_lost")
                results.append(r)
                done += it.task.size
                if on_progress is not None:
                    on_progress({"event": "progress", "done_bytes": done,
                                 "total_bytes": total, "file": it.task.path})
        finally:
            with contextlib.suppress(Exception):
                if assoc.is_established:
                    assoc.release()
    finally:
        state.close()
    counts = {k: sum(1 for r in results if r["status"] == k)
              for k in ("sent", "already-sent", "failed", "not-sent", "skipped")}
    outcome = "failed" if counts["failed"] or counts["not-sent"] else "passed"
    secs = time.monotonic() - t0
    return {"schema": SEND_SCHEMA, "version": __version__, "outcome": outcome,
            "peer": _peer_dict(peer), "tls": facts, "secure_use": secure_use,
            "counts": counts, "bytes_sent": sent_bytes, "seconds": round(secs, 3),
            "instances": results}


@dataclass
class _Prepared:
    """One instance read, checked and ready to go (or the reason it will not)."""

    base: dict
    outcome: dict | None = None                # set: not sent (not-sent, skipped, failed)
    entry: dict | None = None
    warnings: list = field(default_factory=list)
    data: _MemOutput | None = None             # what goes out
    sha: str | None = None
    files: list = field(default_factory=list)  # memfds to close

    def close(self) -> None:
        for m in self.files:
            m.close()
        self.files = []


def _failure(base: dict, code: str, message: str, status: str = "failed",
             findings=()) -> dict:
    reasons = [f.to_dict() for f in findings if f.outcome in (Outcome.FAILED, Outcome.WARNING)]
    return {**base, "status": status,
            "reasons": reasons + [{"code": code, "outcome": "failed", "message": message}]}


def _prepare(accepted, it: SendItem, opts: SendOptions) -> _Prepared:
    """Read, check (and decrypt), reconcile and, if the peer needs it, convert one instance
    into an in-memory file. Runs one instance ahead of the network (a helper thread)."""
    from mediasec.cms.envelope import looks_enveloped
    from mediasec.io.sources import read_fd_chunks
    task = it.task
    p = _Prepared({"path": task.path, "sop_instance_uid": it.sop_instance,
                   "sop_class_uid": it.sop_class, "transfer_syntax": it.ts})
    mem = None
    if it.local_path is not None:
        # a plain file on this machine goes out from where it is; a secure one is
        # decrypted into memory below
        with contextlib.suppress(OSError):
            local = _LocalFile(it.local_path)
            p.files.append(local)
            if not looks_enveloped(os.pread(local.fd, 16, 0)):
                mem, chunks = local, read_fd_chunks(local.fd, local.size)
    if mem is None:
        mem = _MemOutput()
        p.files.append(mem)
        chunks = it.source.open(task.handle)
    try:
        res = extract_file(chunks, task, open_output=lambda _r: mem,
                           decrypters=opts.decrypters, trust=opts.trust,
                           include_invalid=opts.include_invalid)
    except (MediasecError, OSError) as exc:
        code = getattr(exc, "code", "ENV_IO")
        msg = getattr(exc, "message", None) or getattr(exc, "strerror", None) or str(exc)
        p.outcome = _failure(p.base, code, msg, "not-sent")
        return p
    if isinstance(mem, _LocalFile):
        if res.kind != "plain" or res.sha256 is None:
            res = dataclasses.replace(res, output=None)   # not what it looked like
        mem.sha = res.sha256
    if res.output is None:
        bad = [f for f in res.findings if f.outcome is Outcome.FAILED]
        if res.kind not in ("plain", "secure"):
            p.outcome = {**p.base, "status": "skipped",
                         "reasons": [f.to_dict() for f in res.findings]}
        else:
            p.outcome = _failure(p.base, "SEND_INVALID", "failed its checks: not sent "
                                 "(--include-invalid sends it anyway)" if bad else
                                 "could not be read: not sent", "not-sent", res.findings)
        return p
    p.warnings = [f.to_dict() for f in res.findings if f.outcome is not Outcome.PASSED
                  and f.outcome is not Outcome.INFO]
    if it.sop_class is None or it.ts is None:
        p.outcome = _failure(p.base, "SEND_NO_HEADER", "no SOP class or transfer syntax "
                             "found", "not-sent")
        return p
    ts = it.ts
    send_mem = mem
    mapping_info = None
    if opts.mapping is not None or opts.patient is not None:
        try:
            mapped, mapping_info, problem = _reconcile(mem, opts)
        except Exception as exc:  # noqa: BLE001 - a dataset pydicom cannot rewrite
            p.outcome = _failure(p.base, "MAP_FAILED", f"could not rewrite the dataset: "
                                 f"{' '.join(str(exc).split())[:160]}", "not-sent")
            return p
        if problem:
            p.outcome = _failure(p.base, "PATIENT_NOT_MAPPED", problem, "not-sent")
            return p
        if mapped is not None:
            p.files.append(mapped)
            send_mem = mapped
    sent_ts = ts
    if accepted.get((it.sop_class, ts)) is None:
        fb = [t for t in (ELE, ILE) if (it.sop_class, t) in accepted]
        if not fb or ts not in _UNCOMPRESSED:
            p.outcome = _failure(p.base, "NET_TS_REFUSED", f"the peer accepted no "
                                 f"presentation context for this SOP class with transfer "
                                 f"syntax {ts}"
                                 + ("; a compressed syntax is not converted" if fb else ""))
            return p
        sent_ts = fb[0]
        try:
            conv = _convert(send_mem, sent_ts)
        except Exception as exc:  # noqa: BLE001
            p.outcome = _failure(p.base, "NET_CONVERT_FAILED", f"conversion to {sent_ts} "
                                 f"failed: {' '.join(str(exc).split())[:160]}")
            return p
        p.files.append(conv)
        send_mem = conv
    p.data = send_mem
    p.sha = send_mem.hexdigest()
    p.entry = {**p.base, "sent_transfer_syntax": sent_ts, "sha256": p.sha}
    if mapping_info is not None:
        p.entry["patient_mapping"] = mapping_info
    return p


def _transmit(assoc, p: _Prepared, it: SendItem, state: SendState, peer: Peer,
              lost: str | None) -> tuple[dict, int]:
    """C-STORE one prepared instance; its result entry and the bytes sent."""
    if lost:
        return _failure(p.base, "NET_ASSOCIATION_LOST", lost), 0
    if p.outcome is not None:
        return p.outcome, 0
    entry, warnings = p.entry, list(p.warnings)
    if state.confirmed(it.sop_instance, p.sha):
        return {**entry, "status": "already-sent", "reasons": warnings}, 0
    size = os.fstat(p.data.fd).st_size
    try:
        with pynetdicom_errors(str(peer)):
            status = assoc.send_c_store(p.data.path)
    except PeerError as exc:
        return {**_failure(p.base, exc.code, exc.message), "_lost": exc.message}, 0
    word = _status_word(status)
    if word is None:
        why = "no C-STORE response (association lost)"
        return {**_failure(p.base, "NET_ASSOCIATION_LOST", why), "_lost": why}, 0
    entry["dimse_status"] = word
    if p.data.changed():
        return _failure(entry, "SEND_SOURCE_CHANGED", "the file was written to while it was "
                        "checked and sent: what the peer got was not checked; send it "
                        "again"), 0
    if word == 0 or (word & 0xF000) == 0xB000:
        state.record(it.sop_instance, p.sha)
        if word:
            warnings.append({"code": "NET_STORE_WARNING", "outcome": "warning",
                             "message": f"stored with warning status 0x{word:04X}"})
        return {**entry, "status": "sent", "reasons": warnings}, size
    return {**entry, "status": "failed", "reasons": warnings + [
        {"code": "NET_STORE_FAILED", "outcome": "failed",
         "message": f"the peer refused the instance: status 0x{word:04X}"}]}, 0


def _prepared_ahead(items, accepted, opts: SendOptions):
    """``(item, _Prepared)`` in order; the next instance is prepared in a helper thread
    while the caller sends the current one (at most two in memory). The helper runs in
    this job's context."""
    import contextvars
    from concurrent.futures import ThreadPoolExecutor

    ctx = contextvars.copy_context()
    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="mediasec-send-prepare")
    pending = None
    try:
        it = iter(items)
        nxt = next(it, None)
        if nxt is not None:
            pending = (nxt, pool.submit(ctx.run, _prepare, accepted, nxt, opts))
        while pending is not None:
            item, fut = pending
            prepared = fut.result()
            nxt = next(it, None)
            pending = None if nxt is None else (
                nxt, pool.submit(ctx.run, _prepare, accepted, nxt, opts))
            try:
                yield item, prepared
            finally:
                prepared.close()
    finally:
        if pending is not None:
            with contextlib.suppress(Exception):
                pending[1].result().close()
        pool.shutdown(wait=True)
