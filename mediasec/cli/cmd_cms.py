"""``protect``, ``unprotect`` and ``inspect``: one Secure DICOM File at a time."""

from __future__ import annotations

import os
import stat

import click

from mediasec.cli.main import cli
from mediasec.cli.render import warn, write_json
from mediasec.cms.envelope import looks_enveloped
from mediasec.dicom.scan import scan_file
from mediasec.cli._protection import (key_options, load_keys, load_protection,
                                      protection_options, with_options)
from mediasec.cms.secure import (ProtectOptions, SecureFileProducer, inspect_secure_file,
                                 open_secure_file, raise_for_failures)
from mediasec.errors import (InputError, MediasecError, NotCMSError, NotDicomError, UsageError,
                             VerificationError)
from mediasec.io.fs import AnonymousUnsupported, AtomicOutput, env_error
from mediasec.io.keys import file_chunks, read_certificates
from mediasec.policy import TrustContext
from mediasec.report import Outcome

__all__ = []


def _open_input(path: str):
    try:
        # O_NONBLOCK: a FIFO or device must not block the open; refused just below
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            os.close(fd)
            raise UsageError("not a regular file", path=path, code="USAGE_NOT_REGULAR_FILE")
        os.set_blocking(fd, True)
        return os.fdopen(fd, "rb", buffering=0)
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


def _check_part10(f, size: int, src: str) -> None:
    """``DICM`` at byte 128 is not enough: the File Meta Information and the data set's
    first elements must parse (a damaged file raises ``NotDicomError``/``InputError``)."""
    try:
        scan_file(f, size, source=src)
    except OSError as exc:
        raise env_error(exc, src) from exc
    f.seek(0)


def _trust(paths) -> TrustContext:
    anchors = []
    for p in paths:
        anchors += read_certificates(p, "trust anchor file")
    return TrustContext(anchors=tuple(anchors))


# -- protect ---------------------------------------------------------------------------------

@cli.command("protect")
@click.argument("src", type=click.Path(dir_okay=False))
@click.option("-o", "--output", "out", required=True, type=click.Path(dir_okay=False),
              help="The Secure DICOM File to write.")
@protection_options
@click.option("--json", "json_out", metavar="FILE", help="Write a JSON result ('-' = stdout).")
def protect(src, out, json_out, cipher, digest, framing, **flags):
    """Turn one DICOM file into a Secure DICOM File (signed or digested, then enveloped)."""
    policy, recipients, signers = load_protection(subject=src, cipher=cipher, digest=digest,
                                                  **flags)
    if not recipients:
        raise UsageError("no recipient: give --encrypt-to CERT and/or --password-env VAR",
                         code="USAGE_NO_RECIPIENT")
    f = _open_input(src)
    with f:
        head = _sniff(f)
        if looks_enveloped(head):
            raise InputError("already a Secure DICOM File", path=src, code="INPUT_ALREADY_SECURE")
        if len(head) < 132 or head[128:132] != b"DICM":
            raise NotDicomError("not a DICOM Part 10 file (no DICM at byte 128)", path=src)
        size = os.fstat(f.fileno()).st_size
        _check_part10(f, size, src)
        try:
            producer = SecureFileProducer(size, recipients=recipients, signers=signers,
                                          options=ProtectOptions(cipher=cipher, framing=framing,
                                                                 digest=digest),
                                          policy=policy)
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
    write_json(json_out, "mediasec.protect/1", {
        "input": src, "output": out, "size": producer.size, "cipher": cipher,
        "integrity": "signedData" if signers else "digestedData", "framing": framing,
        "recipients": len(recipients)})


# -- unprotect -------------------------------------------------------------------------------

def _open_report(src, decrypters, trust, sink):
    f = _open_input(src)
    with f:
        try:
            return open_secure_file(file_chunks(f), decrypters=decrypters, sink=sink,
                                    trust=trust)
        except OSError as exc:
            raise env_error(exc, src) from exc
        except MediasecError as exc:
            raise exc.with_path(src)


@cli.command("unprotect")
@click.argument("src", type=click.Path(dir_okay=False))
@click.option("-o", "--output", "out", required=True, type=click.Path(dir_okay=False),
              help="The plain DICOM file to write.")
@with_options(key_options)
@click.option("--json", "json_out", metavar="FILE", help="Write a JSON result ('-' = stdout).")
def unprotect(src, out, key, cert, key_password_env, password_env, ask_password, trust,
              json_out):
    """Decrypt a Secure DICOM File and check its digest or signatures.

    The plain file appears at OUT only when every check passed; until then it has no
    name on disk.
    """
    decrypters = load_keys(key, cert, key_password_env, password_env, ask_password)[0]
    if not decrypters:
        raise UsageError("give --key (and --cert) or --password-env VAR to decrypt",
                         code="USAGE_NO_KEY")
    tc = _trust(trust)
    target = AtomicOutput(out, secret=True)
    try:
        dst = target.open()
    except AnonymousUnsupported:
        dst = None
    try:
        if dst is not None:
            report = _open_report(src, decrypters, tc, _writer(dst, out))
            raise_on(report, src)
            target.commit()
        else:
            # no anonymous temp files here: check everything first, then write
            raise_on(_open_report(src, decrypters, tc, None), src)
            target = AtomicOutput(out)
            with target as dst2:
                report = _open_report(src, decrypters, tc, _writer(dst2, out))
                raise_on(report, src)
                target.commit()
    finally:
        if not target.committed:
            target.abort()
    for f in report.findings:
        if f.outcome in (Outcome.WARNING, Outcome.INDETERMINATE):
            warn(src, f.message)
    write_json(json_out, "mediasec.unprotect/1", {"input": src, "output": out,
                                                   **report.to_dict()})


def _writer(dst, out):
    def write(mv):
        try:
            while mv:
                n = dst.write(mv)
                mv = mv[n:]
        except OSError as exc:
            raise env_error(exc, out) from exc
    return write


def raise_on(report, src):
    try:
        raise_for_failures(report)
    except VerificationError as exc:
        raise exc.with_path(src)


# -- inspect ---------------------------------------------------------------------------------

@cli.command("inspect")
@click.argument("src", type=click.Path(dir_okay=False))
@with_options(key_options)
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text.")
def inspect(src, key, cert, key_password_env, password_env, ask_password, trust, as_json):
    """Show a file's CMS structure (and, with a key, check it) or its DICOM basics."""
    f = _open_input(src)
    with f:
        head = _sniff(f)
        if not looks_enveloped(head) and len(head) >= 132 and head[128:132] == b"DICM":
            _check_part10(f, os.fstat(f.fileno()).st_size, src)
    if not looks_enveloped(head):
        if len(head) >= 132 and head[128:132] == b"DICM":
            body = {"file": src, "kind": "plain DICOM Part 10 file"}
            if as_json:
                write_json("-", "mediasec.inspect/1", body)
            else:
                click.echo(f"{src}: plain DICOM Part 10 file (not protected)")
            return 0
        raise NotCMSError("neither a Secure DICOM File nor a DICOM Part 10 file", path=src)
    decrypters = load_keys(key, cert, key_password_env, password_env, ask_password)[0]
    if decrypters:
        report = _open_report(src, decrypters, _trust(trust), None)
    else:
        f = _open_input(src)
        with f:
            try:
                report = inspect_secure_file(file_chunks(f))
            except MediasecError as exc:
                raise exc.with_path(src)
    body = {"file": src, "kind": "Secure DICOM File", **report.to_dict()}
    if as_json:
        write_json("-", "mediasec.inspect/1", body)
    else:
        click.echo(_inspect_text(src, body))
    return 1 if report.failures() else 0


def _inspect_text(src, body) -> str:
    env = body["envelope"]
    lines = [f"{src}: Secure DICOM File",
             f"  envelope: ContentInfo(envelopedData) v{env['version']}, {env['framing']} "
             f"framing, content {env['content_type']}, cipher {env['cipher']}"]
    for r in env["recipients"]:
        desc = ", ".join(f"{k}={v}" for k, v in r.items() if k != "kind")
        lines.append(f"  recipient: {r['kind']} ({desc})")
    inner = body.get("inner")
    if inner:
        lines.append(f"  inner: {inner['type']}{' (wrapped in ContentInfo)' if inner['wrapped'] else ''}"
                     f", {inner['framing']} framing, {inner['content_length']} content bytes")
        for s in inner["signers"]:
            lines.append(f"  signer: {s['subject']}, {s['signature_algorithm']}, "
                         f"signed {s['signing_time']}, valid={s['valid']}, "
                         f"trusted={s.get('trusted')}")
    for fd in body["findings"]:
        lines.append(f"  [{fd['outcome']}] {fd['code']}: {fd['message']}")
    return "\n".join(lines)
