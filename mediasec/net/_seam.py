"""The one boundary between pynetdicom and our error tree.

pynetdicom reports many failures only in its log (a TLS handshake refused in ``connect()``,
a TLS 1.3 client-certificate refusal that arrives after the handshake, an A-ASSOCIATE-RJ);
``associate()`` then returns an association that is rejected or aborted. ``pynetdicom_errors``
records pynetdicom's log while a network step runs and turns whatever went wrong -
exceptions (``OSError``, ``ssl.SSLError``, ``RuntimeError``, ``ValueError``) and log-only
failures - into one ``PeerError`` with a stable ``TLS_*``/``NET_*`` code and a one-line
message naming the peer.
"""

from __future__ import annotations

import contextlib
import logging
import ssl
import threading

from mediasec.errors import MediasecError, PeerError
from mediasec.net.tls import explain_tls_failure

__all__ = ["pynetdicom_errors", "LogCapture", "peer_error", "quiet_per_pdu_logging",
           "quick_ack_reads"]

_LOGGER = logging.getLogger("pynetdicom")


class LogCapture(logging.Handler):
    """Keeps the text (with exception text) of pynetdicom's warnings and errors."""

    def __init__(self) -> None:
        super().__init__(level=logging.WARNING)
        self.lines: list[str] = []
        self._lock2 = threading.Lock()

    def emit(self, record: logging.LogRecord) -> None:
        text = record.getMessage()
        if record.exc_info and record.exc_info[1] is not None:
            text += f" {record.exc_info[1]}"
        with self._lock2:
            self.lines.append(text)

    def tls_reason(self) -> tuple[str, str] | None:
        for line in self.lines:
            code, msg = explain_tls_failure(line)
            if code != "TLS_FAILED":
                return code, msg
        for line in self.lines:
            if "ssl" in line.lower() or "tls" in line.lower():
                return explain_tls_failure(line)
        return None


def peer_error(peer: str, code: str, message: str) -> PeerError:
    return PeerError(message, path=peer, code=code)


@contextlib.contextmanager
def pynetdicom_errors(peer: str):
    """Translate pynetdicom failures while the block runs (see the module docstring).

    Yields the ``LogCapture`` so the caller can explain a rejected/aborted association.
    """
    cap = LogCapture()
    _LOGGER.addHandler(cap)
    old_level = _LOGGER.level
    if _LOGGER.getEffectiveLevel() > logging.WARNING:
        _LOGGER.setLevel(logging.WARNING)
    try:
        yield cap
    except MediasecError:
        raise
    except ssl.SSLError as exc:
        code, msg = explain_tls_failure(f"{exc.reason or ''} {exc}")
        raise peer_error(peer, code, f"TLS refused: {msg}") from exc
    except (ConnectionError, TimeoutError) as exc:
        raise peer_error(peer, "NET_CONNECTION", f"connection failed: "
                         f"{exc.strerror or exc.__class__.__name__}") from exc
    except OSError as exc:
        reason = cap.tls_reason()
        if reason:
            raise peer_error(peer, reason[0], f"TLS refused: {reason[1]}") from exc
        raise peer_error(peer, "NET_CONNECTION",
                         f"connection failed: {exc.strerror or exc}") from exc
    except (RuntimeError, ValueError, AttributeError) as exc:
        raise peer_error(peer, "NET_PROTOCOL", f"DICOM network error: "
                         f"{' '.join(str(exc).split())[:200]}") from exc
    finally:
        _LOGGER.removeHandler(cap)
        _LOGGER.setLevel(old_level)


def explain_association(assoc, cap: LogCapture, peer: str) -> PeerError:
    """Why ``associate()`` did not give an established association."""
    reason = cap.tls_reason()
    if reason:
        return peer_error(peer, reason[0], f"TLS refused: {reason[1]}")
    if assoc.is_rejected:
        rj = [ln for ln in cap.lines if "reject" in ln.lower() or "reason" in ln.lower()]
        why = ""
        for ln in cap.lines:
            low = ln.lower()
            if "calling ae title not recognised" in low or "calling ae" in low:
                why = " (calling AE title not recognised)"
            elif "called ae title not recognised" in low:
                why = " (called AE title not recognised)"
            elif "local limit exceeded" in low:
                why = " (peer busy: association limit reached)"
        return peer_error(peer, "NET_REJECTED", "association rejected by the peer" + why
                          if why or not rj else
                          f"association rejected by the peer ({rj[-1].strip()})")
    for ln in cap.lines:
        if "unable to connect" in ln.lower() or "tcp initialisation error" in ln.lower():
            detail = [x for x in cap.lines if "TCP Initialisation Error" in x]
            return peer_error(peer, "NET_CONNECTION", "connection failed"
                              + (f": {detail[0].split(':', 1)[1].strip()}" if detail else ""))
    if assoc.is_aborted:
        return peer_error(peer, "NET_ABORTED", "the peer aborted the association "
                          "(a TLS peer that refuses our certificate does this, too)")
    return peer_error(peer, "NET_FAILED", "association failed"
                      + (f": {cap.lines[-1]}" if cap.lines else ""))


def quiet_per_pdu_logging(assoc, *, dimse_recv: bool = False) -> None:
    """Unbind pynetdicom's standard logging handlers that run on every PDU of this
    association (they cost CPU per 16 KiB fragment even when nothing is logged), unless
    pynetdicom's debug log is on. ``dimse_recv``: also the one that reads a received data
    set back to say whether it is present - always, on a receiver that spools data sets
    to disk (it would read each one back into memory)."""
    from pynetdicom import evt
    from pynetdicom._handlers import (standard_dimse_recv_handler, standard_dimse_sent_handler,
                                      standard_pdu_recv_handler, standard_pdu_sent_handler)
    pairs = []
    if not _LOGGER.isEnabledFor(logging.DEBUG):
        pairs += [(evt.EVT_PDU_RECV, standard_pdu_recv_handler),
                  (evt.EVT_PDU_SENT, standard_pdu_sent_handler),
                  (evt.EVT_DIMSE_SENT, standard_dimse_sent_handler)]
        if not dimse_recv:
            pairs.append((evt.EVT_DIMSE_RECV, standard_dimse_recv_handler))
    if dimse_recv:
        pairs.append((evt.EVT_DIMSE_RECV, standard_dimse_recv_handler))
    for event, handler in pairs:
        with contextlib.suppress(Exception):
            assoc.unbind(event, handler)


def quick_ack_reads(assoc) -> None:
    """ACK what we read at once (Linux ``TCP_QUICKACK``, set again before each read of
    this association's socket: the kernel drops it by itself, and setting it sends a
    pending ACK now). A peer with Nagle's algorithm on that writes a PDU's header and body
    separately - DCMTK 3.6.7's storescp by default - holds the body of each C-STORE
    response until it sees our ACK of the header; a delayed ACK costs 40 ms or more per
    instance (measured: 70 -> 20 ms an instance of 2 MiB to storescp)."""
    import socket
    opt = getattr(socket, "TCP_QUICKACK", None)
    wrapper = getattr(getattr(assoc, "dul", None), "socket", None)
    raw = getattr(wrapper, "socket", None)
    if opt is None or raw is None:
        return
    recv = wrapper.recv

    def quick_recv(nr_bytes):
        with contextlib.suppress(OSError):
            raw.setsockopt(socket.IPPROTO_TCP, opt, 1)
        return recv(nr_bytes)
    wrapper.recv = quick_recv
