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

import dataclasses
import hashlib
import io
import re
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Iterator, Protocol

from mediasec import __version__
from mediasec._data import MediaProfile, hierarchy, record_types
from mediasec.cms.envelope import looks_enveloped
from mediasec.cms.secure import inspect_secure_file, open_secure_file
from mediasec.dicom.dicomdir import (REF_FILE_ID, REF_SOP_CLASS, REF_SOP_INSTANCE, REF_TS,
                                     DecodedDirectory, DecodedRecord, decode_dicomdir)
from mediasec.dicom.fileid import normalise_component
from mediasec.dicom.scan import MEDIA_STORAGE_DIRECTORY, scan_file
from mediasec.errors import (InputError, MediasecError, NoRecipientError, NotDicomError,
                             WrongPasswordError)
from mediasec.policy import TrustContext
from mediasec.report import FileResult, Finding, Outcome, worst

__all__ = ["MediumEntry", "MediumSource", "MediumIndex", "HeaderFacts", "FileFacts",
           "ExamineTask", "RecordRef", "FileSetIndex", "MediaReport", "examine_file",
           "judge_file", "index_medium", "validate_medium", "check_file_id_value",
           "parse_manifest", "tree_from_facts", "content_ok", "norm_path", "summarize_tree",
           "local_examiner", "examine_tasks", "finish_validation", "HEADER_BOUND", "MAX_DICOMDIR_BYTES",
           "MAX_MANIFEST_BYTES", "SCHEMA", "CONTENT_CODES"]

SCHEMA = "mediasec.verify/1"
#: plaintext kept per file for the header parse (see the module docstring)
HEADER_BOUND = 64 * 1024
#: a DICOMDIR is decoded in memory; larger ones are refused (``DIR_TOO_LARGE``)
MAX_DICOMDIR_BYTES = 64 << 20
MAX_MANIFEST_BYTES = 16 << 20
MANIFEST_NAME = "MANIFEST.SHA"

PATIENT_ID = 0x00100020
PATIENT_NAME = 0x00100010
STUDY_UID = 0x0020000D
SERIES_UID = 0x0020000E
STUDY_DATE = 0x00080020
STUDY_DESCRIPTION = 0x00081030
STUDY_ID = 0x00200010
MODALITY = 0x00080060
SERIES_NUMBER = 0x00200011
INSTANCE_NUMBER = 0x00200013
#: the data-set elements a header parse extracts (all before (0020,0014))
HEADER_TAGS = frozenset({PATIENT_ID, PATIENT_NAME, STUDY_UID, SERIES_UID, STUDY_DATE,
                         STUDY_DESCRIPTION, STUDY_ID, MODALITY, SERIES_NUMBER,
                         INSTANCE_NUMBER})
_KEY_NAMES = {PATIENT_ID: "patient_id", PATIENT_NAME: "patient_name", STUDY_UID: "study_uid",
              SERIES_UID: "series_uid", STUDY_DATE: "study_date",
              STUDY_DESCRIPTION: "study_description", STUDY_ID: "study_id",
              MODALITY: "modality", SERIES_NUMBER: "series_number",
              INSTANCE_NUMBER: "instance_number"}

#: finding codes about a file's *content* (what extract refuses on); name, layout and
#: File-set findings (FILEID_*, ISO_*, FILE_UNREFERENCED, CONTENT_*) do not block a file
CONTENT_CODES_PREFIXES = ("CMS_", "INTEGRITY_", "SIG_", "PAYLOAD_", "DICOM_", "MANIFEST_",
                          "FILE_UNREADABLE", "REF_MISMATCH", "PATH_ESCAPE", "ALG_")
CONTENT_CODES = CONTENT_CODES_PREFIXES

_EXEC_EXTENSIONS = frozenset({"EXE", "COM", "BAT", "CMD", "SCR", "MSI", "DLL", "PIF", "VBS",
                              "VBE", "JS", "JSE", "WSF", "WSH", "PS1", "JAR", "SH", "APP",
                              "LNK", "HTA", "CPL"})
_AUTORUN_NAMES = frozenset({"AUTORUN.INF", "AUTORUN.SH", "AUTORUN", ".AUTORUN"})
_ISO_FILE = re.compile(r"[A-Z0-9_]{1,8}\.;1\Z")
_ISO_DIR = re.compile(r"[A-Z0-9_]{1,8}\Z")
_FILEID_COMPONENT = re.compile(r"[A-Z0-9_]{1,8}\Z")


# -- the medium interface ---------------------------------------------------------------------

@dataclass(frozen=True)
class MediumEntry:
    """One file on the medium.

    ``path``: relative, ``/``-separated, as the user sees it (ISO 9660 ``;1`` and trailing
    ``.`` removed). ``handle``: picklable, for ``MediumSource.open`` in any process.
    ``kind``: ``file`` (openable) or ``escape`` (a symbolic link leading outside the root:
    listed, never opened). ``iso9660``: the ISO 9660 name of the same file when the listing
    comes from another namespace (or from ISO 9660 itself), for ``ISO_NAME``.
    """

    path: str
    size: int
    handle: Any = None
    kind: str = "file"
    iso9660: str | None = None


class MediumSource(Protocol):
    """What ``validate_medium`` needs from an ISO image, a folder or a mounted disc."""

    #: e.g. "ISO 9660 image (Joliet names)", "folder"
    description: str
    #: the path given by the user, for messages
    label: str
    #: ISO: the Primary Volume Descriptor's Volume Identifier (stripped); folders: None
    volume_id: str | None

    def entries(self) -> list[MediumEntry]: ...

    def open(self, handle: Any) -> Iterator[bytes]:
        """The file's bytes as chunks, each valid only until the next is requested (the
        byte-path contract of ``mediasec.media.plan.Producer``)."""
        ...

    def worker_spec(self) -> tuple:
        """Picklable: enough for ``mediasec.io.medium.reopen`` to serve ``open(handle)``."""
        ...


def norm_path(path: str) -> str:
    """A stored path as a File ID would spell it: upper case, no ``;1``, no trailing dot."""
    return "/".join(normalise_component(c) for c in path.split("/"))


def _strip_ext(component: str) -> str:
    stem, dot, _ = normalise_component(component).rpartition(".")
    return stem if dot and stem else normalise_component(component)


class MediumIndex:
    """The listing, indexed for exact, case-insensitive and extension-tolerant lookup."""

    def __init__(self, entries: Iterable[MediumEntry]):
        self.entries = list(entries)
        self.by_path: dict[str, MediumEntry] = {}
        self.by_norm: dict[str, MediumEntry] = {}
        self.by_stem: dict[str, MediumEntry] = {}
        for e in self.entries:
            self.by_path.setdefault(e.path, e)
            self.by_norm.setdefault(norm_path(e.path), e)
            parts = e.path.split("/")
            stem_key = "/".join([normalise_component(p) for p in parts[:-1]]
                                + [_strip_ext(parts[-1])])
            self.by_stem.setdefault(stem_key, e)

    def lookup(self, components: tuple[str, ...]) -> tuple[MediumEntry | None, str | None]:
        """``(entry, how)``: how is None (exact), ``case`` or ``extension``."""
        exact = "/".join(components)
        hit = self.by_path.get(exact)
        if hit is not None:
            return hit, None
        norm = "/".join(normalise_component(c) for c in components)
        hit = self.by_norm.get(norm)
        if hit is not None:
            return hit, "case"
        hit = self.by_stem.get(norm)
        if hit is not None:
            return hit, "extension"
        stem = "/".join([normalise_component(c) for c in components[:-1]]
                        + [_strip_ext(components[-1])])
        hit = self.by_stem.get(stem)
        if hit is not None:
            return hit, "extension"
        return None, None


# -- File IDs from a DICOMDIR ------------------------------------------------------------------

def check_file_id_value(value: str) -> tuple[tuple[str, ...] | None, list[Finding]]:
    """Split a (0004,1500) value; ``(None, [PATH_ESCAPE])`` if it must never be followed.

    Escapes: an empty value or component (a leading ``\\`` is absolute), ``.``/``..``, ``/``
    inside a component (another separator), a drive letter or ``:``, NUL or control bytes.
    Otherwise the components are returned, with ``FILEID_INVALID`` when they break PS3.10
    (lower case, extensions, over 8 characters or components): resolved, but reported.
    """
    raw = value.rstrip(" \0")
    shown = raw.encode("unicode_escape").decode("ascii")[:120]
    comps = tuple(raw.split("\\"))
    bad = None
    if not raw:
        bad = "is empty"
    elif comps[0] == "":
        bad = "is absolute (starts with a separator)"
    elif any(c == "" for c in comps):
        bad = "has an empty component"
    elif any(c.strip() in (".", "..") for c in comps):
        bad = "contains '.' or '..'"
    elif any("/" in c for c in comps):
        bad = "contains '/'"
    elif any(":" in c for c in comps):
        bad = "contains a drive letter or ':'"
    elif any(ord(ch) < 0x20 or ord(ch) == 0x7F for c in comps for ch in c):
        bad = "contains control characters"
    if bad is not None:
        return None, [Finding("PATH_ESCAPE", Outcome.FAILED,
                              f"Referenced File ID {shown!r} {bad}: not followed",
                              {"file_id": shown})]
    comps = tuple(c.strip() for c in comps)
    problems = []
    if len(comps) > 8:
        problems.append(f"{len(comps)} components (at most 8)")
    for c in comps:
        if not _FILEID_COMPONENT.match(c):
            problems.append(f"component {c!r} is not 1-8 characters of A-Z 0-9 _")
            break
    if problems:
        return comps, [Finding("FILEID_INVALID", Outcome.FAILED,
                               f"Referenced File ID {shown!r} breaks PS3.10 8.2: "
                               f"{'; '.join(problems)} (resolved tolerantly)",
                               {"file_id": shown})]
    return comps, []


# -- what one read of a file tells ----------------------------------------------------------

@dataclass(frozen=True)
class HeaderFacts:
    """File Meta Information and the record keys of one (plaintext) DICOM file."""

    media_sop_class_uid: str
    media_sop_instance_uid: str
    transfer_syntax: str
    sop_class_uid: str
    sop_instance_uid: str
    keys: dict = field(default_factory=dict)   # _KEY_NAMES values -> text

    def key(self, name: str) -> str | None:
        return self.keys.get(name)


@dataclass(frozen=True)
class FileFacts:
    """What one read of one stored file found (small, picklable, no plaintext)."""

    path: str
    size: int
    kind: str                                  # secure | plain | other | unreadable
    sha256: str | None = None
    findings: tuple[Finding, ...] = ()
    header: HeaderFacts | None = None
    envelope: dict | None = None               # cipher, recipients, matched recipient
    signers: tuple[str, ...] = ()              # signer subjects
    decrypted: bool = False                    # the whole plaintext passed (sink complete)
    magic: str | None = None                   # executable magic of a non-DICOM file
    content_length: int | None = None          # plaintext length (secure) / size (plain)


@dataclass(frozen=True)
class ExamineTask:
    path: str
    size: int
    handle: Any


class _Tee:
    """Iterate a file's chunks once: SHA-256 of every byte, and the first bytes kept."""

    def __init__(self, chunks: Iterable[bytes], *, keep: int = 0, hashing: bool = True):
        self._it = iter(chunks)
        self._replay: list[bytes] = []
        self.sha = hashlib.sha256() if hashing else None
        self.count = 0
        self.keep = keep
        self.head = bytearray()

    def prime(self, n: int) -> bytes:
        """The first ``n`` bytes (or fewer at the end), without consuming them.

        The first chunk is held as the reader's view; when more chunks are needed the held
        ones are copied *before* the next is requested (a chunk is valid only until then).
        """
        have = sum(len(c) for c in self._replay)
        while have < n:
            if self._replay:
                self._replay = [bytes(c) for c in self._replay]
            nxt = next(self._it, None)
            if nxt is None:
                break
            self._replay.append(nxt)
            have += len(nxt)
        if len(self._replay) == 1:
            return bytes(self._replay[0][:n])
        return b"".join(bytes(c) for c in self._replay)[:n]

    def __iter__(self):
        return self

    def __next__(self):
        if self._replay:
            chunk = self._replay.pop(0)
        else:
            chunk = next(self._it)
        if self.sha is not None:
            self.sha.update(chunk)
        self.count += len(chunk)
        if len(self.head) < self.keep:
            self.head += chunk[:self.keep - len(self.head)]
        return chunk

    def drain(self) -> None:
        for _ in self:
            pass


class _HeaderFull(Exception):
    """Raised from a sink to stop reading once the header is captured (listing only)."""


def _exec_magic(first: bytes) -> str | None:
    if first[:2] == b"MZ":
        return "PE/DOS executable (MZ)"
    if first[:4] == b"\x7fELF":
        return "ELF executable"
    if first[:4] in (b"\xfe\xed\xfa\xce", b"\xfe\xed\xfa\xcf", b"\xce\xfa\xed\xfe",
                     b"\xcf\xfa\xed\xfe", b"\xca\xfe\xba\xbe"):
        return "Mach-O executable"
    if first[:2] == b"#!":
        return "script (#!)"
    return None


def _parse_header(head: bytes, content_length: int, path: str
                  ) -> tuple[HeaderFacts | None, list[Finding]]:
    try:
        s = scan_file(io.BytesIO(head), content_length, source=path, tags=HEADER_TAGS,
                      need_explicit_length=False)
    except NotDicomError as exc:
        return None, [Finding("PAYLOAD_NOT_DICOM", Outcome.FAILED, exc.message)]
    except InputError as exc:
        if content_length > len(head):
            return None, [Finding("DICOM_HEADER_TOO_LONG", Outcome.INDETERMINATE,
                                  f"the DICOM header does not end within the first "
                                  f"{HEADER_BOUND // 1024} KiB; record keys not checked")]
        return None, [Finding(exc.code if exc.code.startswith("DICOM_") else "DICOM_DAMAGED",
                              Outcome.FAILED, f"damaged DICOM header: {exc.message}")]
    keys = {}
    for tag, name in _KEY_NAMES.items():
        v = s.text(tag)
        if v is not None:
            keys[name] = v
    return HeaderFacts(s.media_sop_class_uid, s.media_sop_instance_uid, s.transfer_syntax,
                       s.sop_class_uid, s.sop_instance_uid, keys), []


def _envelope_summary(env: dict) -> dict:
    return {"cipher": env.get("cipher"), "framing": env.get("framing"),
            "content_type": env.get("content_type"),
            "recipients": env.get("recipients", []),
            "matched_recipient": env.get("matched_recipient")}


def examine_file(chunks: Iterable[bytes], *, path: str, size: int, decrypters=(),
                 trust: TrustContext | None = None,
                 sink: Callable[[memoryview], None] | None = None,
                 header_only: bool = False) -> FileFacts:
    """Read one stored file once and say what it is (see the module docstring).

    ``sink`` receives the plaintext of a DICOM file (decrypted, or the plain bytes) as it
    passes; use it only if ``decrypted`` is true and the judged findings allow it.
    ``header_only`` (listing): stop once the header is captured; no hash, no checks.
    """
    tee = _Tee(chunks, keep=HEADER_BOUND, hashing=not header_only)
    findings: list[Finding] = []
    try:
        first = tee.prime(160)
        if looks_enveloped(first[:16]):
            tee.keep = 0   # the header comes from the plaintext, not the stored bytes
            return _examine_secure(tee, path, size, list(decrypters), trust, sink,
                                   header_only)
        if len(first) >= 132 and first[128:132] == b"DICM":
            for chunk in tee:
                if sink is not None:
                    sink(memoryview(chunk))
                if header_only and tee.count >= HEADER_BOUND:
                    break
            header, hf = _parse_header(bytes(tee.head), tee.count if not header_only
                                       else size, path)
            return FileFacts(path, size, "plain", _hex(tee), tuple(hf), header,
                             decrypted=not header_only, content_length=size)
        if not header_only:
            tee.drain()
        return FileFacts(path, size, "other", _hex(tee), (), magic=_exec_magic(first))
    except (OSError, MediasecError) as exc:
        if isinstance(exc, MediasecError) and not exc.code.startswith("ENV"):
            raise
        msg = getattr(exc, "strerror", None) or getattr(exc, "message", None) or str(exc)
        findings.append(Finding("FILE_UNREADABLE", Outcome.FAILED,
                                f"the file could not be read from the medium: {msg}"))
        return FileFacts(path, size, "unreadable", None, tuple(findings))


def _hex(tee: _Tee) -> str | None:
    return tee.sha.hexdigest() if tee.sha is not None else None


def _examine_secure(tee: _Tee, path, size, decrypters, trust, sink, header_only) -> FileFacts:
    findings: list[Finding] = []
    envelope = None
    signers: tuple[str, ...] = ()
    header = None
    decrypted = False
    content_length = None
    if not decrypters:
        try:
            rep = inspect_secure_file(tee)
            envelope = _envelope_summary(rep.envelope)
            findings += rep.findings
        except MediasecError as exc:
            findings.append(Finding(exc.code, Outcome.FAILED, exc.message))
        if not header_only:
            tee.drain()
        return FileFacts(path, size, "secure", _hex(tee), tuple(findings), None, envelope)
    plain_head = bytearray()

    def capture(mv) -> None:
        if len(plain_head) < HEADER_BOUND:
            plain_head.extend(mv[:HEADER_BOUND - len(plain_head)])
        if sink is not None:
            sink(mv)
        if header_only and len(plain_head) >= HEADER_BOUND:
            raise _HeaderFull()

    rep = None
    try:
        rep = open_secure_file(tee, decrypters=decrypters, sink=capture, trust=trust)
        decrypted = True
    except _HeaderFull:
        pass
    except NoRecipientError as exc:
        findings.append(Finding("CMS_NOT_RECIPIENT", Outcome.FAILED, exc.message))
    except WrongPasswordError as exc:
        findings.append(Finding("CMS_WRONG_PASSWORD", Outcome.FAILED, exc.message))
    except MediasecError as exc:
        if exc.code.startswith("ENV"):
            raise
        findings.append(Finding(exc.code, Outcome.FAILED, exc.message))
    if not header_only:
        tee.drain()
    if rep is not None:
        envelope = _envelope_summary(rep.envelope)
        signers = tuple(str(s.get("subject")) for s in rep.signers)
        findings += rep.findings
        content_length = rep.inner.content_length if rep.inner is not None else None
        not_dicom = any(f.code == "PAYLOAD_NOT_DICOM" for f in rep.findings)
        if not not_dicom and plain_head:
            header, hf = _parse_header(bytes(plain_head), content_length or len(plain_head),
                                       path)
            findings += hf
    elif header_only and plain_head:
        header, _ = _parse_header(bytes(plain_head), size, path)
    return FileFacts(path, size, "secure", _hex(tee), tuple(findings), header, envelope,
                     signers, decrypted, None, content_length)


# -- the manifest ---------------------------------------------------------------------------

_MANIFEST_LINE = re.compile(r"([0-9a-fA-F]{64}) [ *](.+)\Z")


def parse_manifest(data: bytes) -> tuple[dict[str, str], list[Finding]]:
    """``sha256sum`` lines -> {normalised path: lowercase hex}; bad lines are findings."""
    out: dict[str, str] = {}
    findings: list[Finding] = []
    try:
        text = data.decode("ascii")
    except UnicodeDecodeError:
        return {}, [Finding("MANIFEST_MALFORMED", Outcome.FAILED,
                            "MANIFEST.SHA is not ASCII text")]
    bad = 0
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        m = _MANIFEST_LINE.match(line)
        if m is None:
            bad += 1
            if bad <= 3:
                findings.append(Finding("MANIFEST_MALFORMED", Outcome.FAILED,
                                        f"MANIFEST.SHA line {n} is not '<sha256>  <path>'"))
            continue
        p = m.group(2).strip().replace("\\", "/").lstrip("./")
        if p.startswith("/"):
            p = p.lstrip("/")
        out[norm_path(p)] = m.group(1).lower()
    if bad > 3:
        findings.append(Finding("MANIFEST_MALFORMED", Outcome.FAILED,
                                f"MANIFEST.SHA has {bad} malformed lines in all"))
    return out, findings


# -- the DICOMDIR index ----------------------------------------------------------------------

@dataclass(frozen=True)
class RecordRef:
    """A leaf record that references a file, with the keys of its ancestors."""

    file_id: str                       # the (0004,1500) value, components joined by '/'
    record_type: str
    offset: int
    sop_class_uid: str | None
    sop_instance_uid: str | None
    transfer_syntax: str | None
    patient_id: str | None
    study_uid: str | None
    series_uid: str | None
    how: str | None = None             # None (exact), "case", "extension"


@dataclass
class FileSetIndex:
    """Everything learned before the files are examined."""

    index: MediumIndex
    dicomdir_entry: MediumEntry | None = None
    dicomdir_result: FileResult | None = None
    dicomdir_secure: bool = False
    dicomdir_facts: FileFacts | None = None
    directory: DecodedDirectory | None = None
    refs: dict = field(default_factory=dict)          # entry path -> RecordRef
    missing: dict = field(default_factory=dict)       # display path -> [Finding]
    manifest_entry: MediumEntry | None = None
    manifest: dict | None = None                      # entry path -> SHA-256 hex
    manifest_unresolved: list = field(default_factory=list)
    manifest_sha: str | None = None
    medium_findings: list = field(default_factory=list)
    tree: list = field(default_factory=list)

    @property
    def usable(self) -> bool:
        return self.directory is not None


def _text(rec: DecodedRecord, tag: int) -> str | None:
    try:
        return rec.text(tag)
    except Exception:  # noqa: BLE001 - an undecodable value is as good as absent here
        return None


def _read_small(source: MediumSource, entry: MediumEntry, cap: int, what: str
                ) -> tuple[bytes | None, str | None, list[Finding]]:
    """The bytes (if within ``cap``) and SHA-256 of a small file, read once."""
    if entry.size > cap:
        return None, None, [Finding("DIR_TOO_LARGE" if what == "DICOMDIR" else
                                    "MANIFEST_MALFORMED", Outcome.FAILED,
                                    f"{what} is larger than {cap >> 20} MiB; not read")]
    buf = bytearray()
    h = hashlib.sha256()
    try:
        for chunk in source.open(entry.handle):
            h.update(chunk)
            buf += chunk
            if len(buf) > cap:
                return None, None, [Finding("FILE_UNREADABLE", Outcome.FAILED,
                                            f"{what} grew beyond its listed size")]
    except OSError as exc:
        return None, None, [Finding("FILE_UNREADABLE", Outcome.FAILED,
                                    f"{what} could not be read: {exc.strerror or exc}")]
    return bytes(buf), h.hexdigest(), []


def _find_root(index: MediumIndex, name: str) -> tuple[MediumEntry | None, str | None]:
    hit = index.by_path.get(name)
    if hit is not None:
        return hit, None
    hit = index.by_norm.get(name)
    return (hit, "case") if hit is not None else (None, None)


def index_medium(source: MediumSource, *, decrypters=(), trust: TrustContext | None = None
                 ) -> FileSetIndex:
    """Step 1: find, open and decode the DICOMDIR, resolve its references, read the manifest.

    Raises ``InputError`` only when the caller's keys cannot open a secure DICOMDIR (no
    matching recipient, wrong password): the medium cannot be read as asked (exit 2).
    """
    index = MediumIndex(source.entries())
    fsi = FileSetIndex(index)
    # the manifest (plain text, hashes of the stored files)
    m_entry, _ = _find_root(index, MANIFEST_NAME)
    if m_entry is not None and m_entry.kind == "file":
        fsi.manifest_entry = m_entry
        data, sha, problems = _read_small(source, m_entry, MAX_MANIFEST_BYTES, MANIFEST_NAME)
        fsi.manifest_sha = sha
        if data is not None:
            listed, more = parse_manifest(data)
            problems += more
            # resolve each listed path like a File ID (case, ;1, extension tolerated)
            fsi.manifest = {}
            for p, digest in listed.items():
                entry, _how = index.lookup(tuple(p.split("/")))
                if entry is None:
                    fsi.manifest_unresolved.append(p)
                else:
                    fsi.manifest.setdefault(entry.path, digest)
        fsi.missing.setdefault(m_entry.path, []).extend(problems)
    # the DICOMDIR
    d_entry, how = _find_root(index, "DICOMDIR")
    if d_entry is None or d_entry.kind != "file":
        fsi.medium_findings.append(Finding("FS_NO_DICOMDIR", Outcome.FAILED,
                                           "no DICOMDIR in the root of the medium; the files "
                                           "were examined without it"))
        return fsi
    fsi.dicomdir_entry = d_entry
    dfind: list[Finding] = []
    if how == "case":
        dfind.append(Finding("FILEID_CASE", Outcome.WARNING,
                             f"the DICOMDIR is stored as {d_entry.path!r}; found only by a "
                             "case-insensitive lookup"))
    plain = None
    if d_entry.size > MAX_DICOMDIR_BYTES:
        dfind.append(Finding("DIR_TOO_LARGE", Outcome.FAILED,
                             f"DICOMDIR is larger than {MAX_DICOMDIR_BYTES >> 20} MiB; "
                             "not decoded"))
        facts = examine_file(source.open(d_entry.handle), path=d_entry.path,
                             size=d_entry.size)
    else:
        buf = bytearray()

        def keep(mv) -> None:
            if len(buf) + len(mv) > MAX_DICOMDIR_BYTES:
                raise InputError("decrypted DICOMDIR too large", code="DIR_TOO_LARGE")
            buf.extend(mv)
        try:
            facts = examine_file(source.open(d_entry.handle), path=d_entry.path,
                                 size=d_entry.size, decrypters=decrypters, trust=trust,
                                 sink=keep)
        except InputError as exc:
            dfind.append(Finding(exc.code, Outcome.FAILED, exc.message))
            facts = None
        if facts is not None and facts.decrypted:
            plain = bytes(buf)
    fsi.dicomdir_facts = facts
    if facts is not None:
        fsi.dicomdir_secure = facts.kind == "secure"
        for f in facts.findings:
            if f.code in ("CMS_NOT_RECIPIENT", "CMS_WRONG_PASSWORD") and decrypters:
                raise InputError(f"the DICOMDIR cannot be opened with the given key or "
                                 f"password: {f.message}", path=f"{source.label}:DICOMDIR",
                                 code=f.code)
        dfind += [f for f in facts.findings if not f.code.startswith("DICOM_")
                  and f.code != "PAYLOAD_NOT_DICOM"]
        if facts.kind == "other":
            dfind.append(Finding("DIR_META", Outcome.FAILED,
                                 "DICOMDIR is neither a DICOM file nor a Secure DICOM File"))
    if plain is not None:
        try:
            fsi.directory = decode_dicomdir(plain, path=d_entry.path, lenient=True)
        except InputError as exc:
            dfind.append(Finding(exc.code, Outcome.FAILED, exc.message))
    if fsi.directory is not None:
        d = fsi.directory
        sev = {"DIR_ORPHAN": Outcome.WARNING}
        dfind += [Finding(c, sev.get(c, Outcome.FAILED), m) for c, m in d.findings]
        if d.record_count == 0:
            dfind.append(Finding("DIR_EMPTY", Outcome.FAILED, "the DICOMDIR has no records"))
        _walk_records(fsi, dfind)
        # the records now live on as refs and tree: let the decoded elements go
        fsi.directory = dataclasses.replace(d, roots=())
    elif plain is not None or (facts is not None and facts.decrypted):
        fsi.medium_findings.append(Finding("FS_DICOMDIR_UNUSABLE", Outcome.FAILED,
                                           "the DICOMDIR could not be decoded; the files "
                                           "were examined without it"))
    info = {"kind": facts.kind if facts else "unreadable", "size": d_entry.size,
            "role": "dicomdir"}
    if facts is not None and facts.sha256:
        info["sha256"] = facts.sha256
    fsi.dicomdir_result = FileResult(d_entry.path, tuple(dfind), info)
    return fsi


def _walk_records(fsi: FileSetIndex, dfind: list[Finding]) -> None:
    """References, hierarchy, keys and duplicates of the decoded records (linear)."""
    d = fsi.directory
    allowed = hierarchy()
    specs = record_types()
    leaf_types = {n for n, s in specs.items() if s.level == "leaf"}
    seen_keys: dict[tuple[str, str], int] = {}
    dup_reported: set = set()
    referenced_by: dict[str, int] = {}
    counts = {"hierarchy": 0, "keys": 0}

    def note(code: str, msg: str, outcome=Outcome.FAILED, **detail) -> None:
        dfind.append(Finding(code, outcome, msg, detail))

    def visit(rec: DecodedRecord, parent: str, ctx: dict, out: list) -> None:
        rtype = rec.type or "?"
        ok_children = allowed.get(parent)
        if parent in leaf_types:
            ok_children = frozenset({"PRIVATE"})
        if (ok_children is not None and rtype not in ok_children and rtype != "PRIVATE"
                and rtype in specs):
            counts["hierarchy"] += 1
            if counts["hierarchy"] <= 20:
                note("DIR_HIERARCHY", f"{rtype} record at offset {rec.offset} is not allowed "
                     f"under {parent}")
        spec = specs.get(rtype)
        if spec is not None:
            for k in spec.keys:
                if k.type not in ("1", "2"):
                    continue
                hit = rec.elements.get(k.tag)
                empty = hit is None or not hit[1].strip(b"\0 ")
                if hit is None or (k.type == "1" and empty):
                    counts["keys"] += 1
                    if counts["keys"] <= 20:
                        note("DIR_KEY_MISSING", f"{rtype} record at offset {rec.offset}: "
                             f"Type {k.type} key {k.keyword} is "
                             f"{'absent' if hit is None else 'empty'}")
        key_tag = {"PATIENT": PATIENT_ID, "STUDY": STUDY_UID, "SERIES": SERIES_UID}.get(rtype)
        ctx = dict(ctx)
        node: dict = {"type": rtype, "offset": rec.offset}
        if key_tag is not None:
            value = _text(rec, key_tag) or ""
            ctx[rtype] = value
            if value:
                k = (rtype, value)
                seen_keys[k] = seen_keys.get(k, 0) + 1
                if seen_keys[k] == 2 and k not in dup_reported:
                    dup_reported.add(k)
                    what = {"PATIENT": "Patient ID", "STUDY": "Study Instance UID",
                            "SERIES": "Series Instance UID"}[rtype]
                    note("DIR_KEY_DUPLICATE", f"{what} of the {rtype} record at offset "
                         f"{rec.offset} repeats another {rtype} record's")
        if rtype == "PATIENT":
            node["patient_name"] = _text(rec, PATIENT_NAME)
            node["patient_id"] = _text(rec, PATIENT_ID)
        elif rtype == "STUDY":
            node.update(study_uid=_text(rec, STUDY_UID), study_date=_text(rec, STUDY_DATE),
                        study_description=_text(rec, STUDY_DESCRIPTION),
                        study_id=_text(rec, STUDY_ID))
        elif rtype == "SERIES":
            node.update(series_uid=_text(rec, SERIES_UID), modality=_text(rec, MODALITY),
                        series_number=_text(rec, SERIES_NUMBER))
        raw = _text(rec, REF_FILE_ID)
        if raw is not None and raw.strip(" \0"):
            node["instance_number"] = _text(rec, INSTANCE_NUMBER)
            # what a PACS import matches on (Referenced ... in File, from the record)
            node["sop_instance_uid"] = _text(rec, REF_SOP_INSTANCE)
            node["sop_class_uid"] = _text(rec, REF_SOP_CLASS)
            node["transfer_syntax"] = _text(rec, REF_TS)
            comps, ff = check_file_id_value(raw)
            for f in ff:
                dfind.append(Finding(f.code, f.outcome, f"{rtype} record at offset "
                                     f"{rec.offset}: {f.message}", f.detail))
            if comps is not None:
                entry, how = fsi.index.lookup(comps)
                shown = "/".join(comps)
                node["file_id"] = shown
                ref = RecordRef(shown, rtype, rec.offset, _text(rec, REF_SOP_CLASS),
                                _text(rec, REF_SOP_INSTANCE), _text(rec, REF_TS),
                                ctx.get("PATIENT"), ctx.get("STUDY"), ctx.get("SERIES"), how)
                if entry is None:
                    fsi.missing.setdefault(shown, []).append(Finding(
                        "FILE_MISSING", Outcome.FAILED,
                        f"referenced by the {rtype} record at offset {rec.offset}, but not "
                        "on the medium"))
                elif entry.path in fsi.refs:
                    referenced_by[entry.path] = referenced_by.get(entry.path, 1) + 1
                    fsi.missing.setdefault(entry.path, []).append(Finding(
                        "FILE_DUP_REF", Outcome.FAILED,
                        f"referenced again by the {rtype} record at offset {rec.offset} "
                        f"(first by offset {fsi.refs[entry.path].offset})"))
                else:
                    fsi.refs[entry.path] = ref
                    node["path"] = entry.path
        children: list = []
        for c in rec.children:
            visit(c, rtype if rtype in allowed or rtype in leaf_types else "PRIVATE", ctx,
                  children)
        if children:
            node["children"] = children
        out.append(node)

    for r in d.roots:
        visit(r, "ROOT", {}, fsi.tree)
    if counts["hierarchy"] > 20:
        note("DIR_HIERARCHY", f"{counts['hierarchy']} misplaced records in all")
    if counts["keys"] > 20:
        note("DIR_KEY_MISSING", f"{counts['keys']} missing keys in all")


# -- judging ---------------------------------------------------------------------------------

def _iso_findings(entry: MediumEntry) -> list[Finding]:
    out = []
    if entry.iso9660 is not None:
        parts = entry.iso9660.strip("/").split("/")
        if not (_ISO_FILE.match(parts[-1]) and all(_ISO_DIR.match(p) for p in parts[:-1])):
            out.append(Finding("ISO_NAME", Outcome.WARNING,
                               f"ISO 9660 name {entry.iso9660!r} is not of the form NAME.;1 "
                               "(PS3.12 F)"))
    if entry.path.count("/") + 1 > 8:
        out.append(Finding("ISO_DEPTH", Outcome.WARNING,
                           "more than 8 directory levels (PS3.12)"))
    return out


def judge_file(facts: FileFacts, *, entry: MediumEntry | None, ref: RecordRef | None,
               manifest: dict | None, dicomdir_usable: bool,
               profile: MediaProfile | None = None, iso: bool = False) -> tuple[Finding, ...]:
    """Pure: facts + the record referencing the file + the manifest -> findings.

    ``manifest`` maps stored paths (resolved) to SHA-256 hex (None: the medium has none);
    ``dicomdir_usable``: a decoded DICOMDIR exists, so an unreferenced DICOM file is news.
    """
    out = list(facts.findings)
    is_dicom = facts.kind in ("secure", "plain")
    h = facts.header
    if ref is not None:
        if ref.how == "case":
            out.append(Finding("FILEID_CASE", Outcome.WARNING,
                               f"stored as {facts.path!r}; the File ID {ref.file_id!r} "
                               "matches only case-insensitively"))
        elif ref.how == "extension":
            out.append(Finding("FILEID_EXTENSION", Outcome.WARNING,
                               f"stored as {facts.path!r}; the File ID {ref.file_id!r} "
                               "matches only without the extension"))
        if facts.kind == "other":
            out.append(Finding("PAYLOAD_NOT_DICOM", Outcome.FAILED,
                               f"referenced by a {ref.record_type} record, but neither a "
                               "DICOM file nor a Secure DICOM File"))
        missing = [n for n, v in (("Referenced SOP Class UID in File", ref.sop_class_uid),
                                  ("Referenced SOP Instance UID in File",
                                   ref.sop_instance_uid),
                                  ("Referenced Transfer Syntax UID in File",
                                   ref.transfer_syntax)) if not v]
        if missing:
            out.append(Finding("DIR_KEY_MISSING", Outcome.FAILED,
                               f"the {ref.record_type} record lacks {', '.join(missing)}"))
        if h is not None:
            diffs = [n for n, a, b in (
                ("SOP Class UID", ref.sop_class_uid, h.media_sop_class_uid),
                ("SOP Instance UID", ref.sop_instance_uid, h.media_sop_instance_uid),
                ("Transfer Syntax UID", ref.transfer_syntax, h.transfer_syntax)) if a and a != b]
            if diffs:
                out.append(Finding("REF_MISMATCH", Outcome.FAILED,
                                   f"the {ref.record_type} record's {', '.join(diffs)} differ "
                                   "from the file's File Meta Information",
                                   {"record": {"sop_class_uid": ref.sop_class_uid,
                                               "sop_instance_uid": ref.sop_instance_uid,
                                               "transfer_syntax": ref.transfer_syntax},
                                    "file": {"sop_class_uid": h.media_sop_class_uid,
                                             "sop_instance_uid": h.media_sop_instance_uid,
                                             "transfer_syntax": h.transfer_syntax}}))
            kd = [n for n, a, b in (("Patient ID", ref.patient_id, h.key("patient_id")),
                                    ("Study Instance UID", ref.study_uid, h.key("study_uid")),
                                    ("Series Instance UID", ref.series_uid,
                                     h.key("series_uid"))) if a is not None and a != b]
            if kd:
                out.append(Finding("KEY_MISMATCH", Outcome.WARNING,
                                   f"{', '.join(kd)} of the parent records differ from the "
                                   "file's data set"))
    elif is_dicom and dicomdir_usable:
        out.append(Finding("FILE_UNREFERENCED", Outcome.WARNING,
                           "a DICOM file on the medium that no DICOMDIR record references"))
    if h is not None and profile is not None and not profile.allows(h.transfer_syntax):
        out.append(Finding("PROFILE_TS", Outcome.FAILED,
                           f"transfer syntax {h.transfer_syntax} is not allowed by "
                           f"{profile.id}"))
    if h is not None and h.sop_class_uid == MEDIA_STORAGE_DIRECTORY and ref is None:
        out.append(Finding("FS_EXTRA_DICOMDIR", Outcome.WARNING,
                           "a second Basic Directory (DICOMDIR) outside the root"))
    if facts.kind == "other":
        name = facts.path.rsplit("/", 1)[-1].upper()
        if "/" not in facts.path and name in _AUTORUN_NAMES:
            out.append(Finding("CONTENT_AUTORUN", Outcome.WARNING,
                               "an autorun file: a computer may start a program when the "
                               "medium is inserted"))
        ext = name.rpartition(".")[2] if "." in name else ""
        if facts.magic is not None or ext in _EXEC_EXTENSIONS:
            what = facts.magic or f".{ext} file"
            out.append(Finding("CONTENT_EXECUTABLE", Outcome.WARNING,
                               f"executable content ({what}); not DICOM, not checked"))
    if manifest is not None and facts.sha256 is not None:
        expected = manifest.get(facts.path)
        if expected is None:
            out.append(Finding("MANIFEST_UNLISTED", Outcome.WARNING,
                               "the file is not listed in MANIFEST.SHA"))
        elif expected != facts.sha256:
            out.append(Finding("MANIFEST_MISMATCH", Outcome.FAILED,
                               "SHA-256 of the stored file differs from MANIFEST.SHA "
                               "(changed after the medium was written)"))
        else:
            out.append(Finding("MANIFEST_OK", Outcome.PASSED,
                               "SHA-256 matches MANIFEST.SHA"))
    if iso and entry is not None and (is_dicom or ref is not None):
        out += _iso_findings(entry)
    return tuple(out)


def content_ok(findings: Iterable[Finding]) -> bool:
    """No FAILED finding about the file's content (extract's criterion)."""
    return not any(f.outcome is Outcome.FAILED and f.code.startswith(CONTENT_CODES_PREFIXES)
                   for f in findings)


# -- the report ------------------------------------------------------------------------------

@dataclass(frozen=True)
class MediaReport:
    """The frozen result of ``validate_medium``; ``to_dict()`` is the JSON document."""

    medium: dict
    findings: tuple[Finding, ...]
    files: tuple[FileResult, ...]
    tree: tuple[dict, ...] = ()
    schema: str = SCHEMA

    @property
    def outcome(self) -> Outcome:
        o = worst([*(f.outcome for f in self.findings), *(r.status for r in self.files)])
        return Outcome.PASSED if o is Outcome.INFO else o

    @property
    def failed(self) -> bool:
        return self.outcome is Outcome.FAILED

    def counts(self) -> dict:
        c = {"files": len(self.files), "passed": 0, "failed": 0, "indeterminate": 0,
             "with_warnings": 0}
        for r in self.files:
            st = r.status
            if st is Outcome.FAILED:
                c["failed"] += 1
            elif st is Outcome.INDETERMINATE:
                c["indeterminate"] += 1
            else:
                c["passed"] += 1
                if st is Outcome.WARNING:
                    c["with_warnings"] += 1
        return c

    def problems(self) -> dict[str, list[tuple[str, Finding]]]:
        """Non-passing findings grouped by code: code -> [(path or '', finding)]."""
        out: dict[str, list] = {}
        for f in self.findings:
            if f.outcome not in (Outcome.PASSED, Outcome.INFO):
                out.setdefault(f.code, []).append(("", f))
        for r in self.files:
            for f in r.findings:
                if f.outcome not in (Outcome.PASSED, Outcome.INFO):
                    out.setdefault(f.code, []).append((r.path, f))
        return out

    def to_dict(self) -> dict:
        return {"schema": self.schema, "version": __version__, "outcome": self.outcome.value,
                "medium": self.medium, "counts": self.counts(),
                "findings": [f.to_dict() for f in self.findings],
                "files": [r.to_dict() for r in self.files],
                "tree": [_public_node(n) for n in self.tree]}


_PHI_KEYS = ("patient_name", "patient_id")


def _public_node(node: dict) -> dict:
    """A tree node without patient names or IDs (for reports that travel)."""
    out = {k: v for k, v in node.items() if k not in _PHI_KEYS and k != "children"}
    if "children" in node:
        out["children"] = [_public_node(c) for c in node["children"]]
    return out


def summarize_tree(tree: Iterable[dict]) -> list[dict]:
    """patients -> studies -> series with instance counts (no files listed)."""
    def count(node: dict) -> int:
        return sum(1 for c in node.get("children", ()) if "file_id" in c or "path" in c)

    out = []
    for p in tree:
        if p.get("type") != "PATIENT":
            continue
        studies = []
        for st in p.get("children", ()):
            series = [{"series_uid": se.get("series_uid"), "modality": se.get("modality"),
                       "series_number": se.get("series_number"), "instances": count(se)}
                      for se in st.get("children", ()) if se.get("type") == "SERIES"]
            studies.append({"study_uid": st.get("study_uid"), "study_date": st.get("study_date"),
                            "study_description": st.get("study_description"),
                            "series": series})
        out.append({"patient_name": p.get("patient_name"), "patient_id": p.get("patient_id"),
                    "studies": studies})
    return out


def tree_from_facts(facts: Iterable[FileFacts]) -> list[dict]:
    """A PATIENT/STUDY/SERIES/leaf tree built from file headers (no usable DICOMDIR)."""
    patients: dict = {}
    for f in facts:
        h = f.header
        if h is None or h.sop_class_uid == MEDIA_STORAGE_DIRECTORY:
            continue
        pk = h.key("patient_id") or ""
        p = patients.setdefault(pk, {"type": "PATIENT", "patient_id": h.key("patient_id"),
                                     "patient_name": h.key("patient_name"), "_c": {}})
        sk = h.key("study_uid") or ""
        st = p["_c"].setdefault(sk, {"type": "STUDY", "study_uid": h.key("study_uid"),
                                     "study_date": h.key("study_date"),
                                     "study_description": h.key("study_description"),
                                     "study_id": h.key("study_id"), "_c": {}})
        ek = h.key("series_uid") or ""
        se = st["_c"].setdefault(ek, {"type": "SERIES", "series_uid": h.key("series_uid"),
                                      "modality": h.key("modality"),
                                      "series_number": h.key("series_number"), "_c": {}})
        se["_c"][f.path] = {"type": "INSTANCE", "path": f.path, "file_id": f.path,
                            "sop_instance_uid": h.sop_instance_uid,
                            "sop_class_uid": h.sop_class_uid,
                            "transfer_syntax": h.transfer_syntax,
                            "instance_number": h.key("instance_number")}

    def finish(node: dict) -> dict:
        kids = node.pop("_c", None)
        if kids:
            node["children"] = [finish(k) for k in kids.values()]
        return node
    return [finish(p) for p in patients.values()]


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
