"""``deidentify`` and ``reidentify``: PS3.15 Annex E attribute confidentiality.

Flags become a ``mediasec.deid.DeidJob`` (or decrypters); the domain does the work. One
input file and an output that is not a folder: one output file. Otherwise the output is a
new folder of ``<SOP Instance UID>.dcm`` files (no input names, which may carry patient
data), built beside its target and renamed at the end; any error leaves nothing.
"""

from __future__ import annotations

import os

import click

from mediasec.cli._protection import key_options, load_keys, with_options
from mediasec.cli.main import cli
from mediasec.cli.render import warn, write_json
from mediasec.cms.keys import KeyTransportRecipient, PasswordRecipient
from mediasec.deid import DeidJob, reidentify
from mediasec.deid.profile import OPTIONS
from mediasec.errors import MediasecError, UsageError
from mediasec.io.fs import AnonymousUnsupported, AtomicOutput, StagingDir, env_error
from mediasec.io.keys import read_certificates, read_password
from mediasec.policy import CIPHERS, AlgorithmPolicy
from mediasec.report import Outcome

__all__ = []


def _inputs(paths) -> list[str]:
    files = []
    for p in paths:
        if os.path.isdir(p):
            for root, dirs, names in os.walk(p):
                dirs.sort()
                files += [os.path.join(root, n) for n in sorted(names)]
        elif os.path.exists(p):
            files.append(p)
        else:
            raise UsageError("no such file", path=p, code="USAGE_NO_SUCH_FILE")
    if not files:
        raise UsageError("no input files", code="USAGE_NO_INPUT")
    return files


def _open(path: str):
    try:
        return open(path, "rb")
    except OSError as exc:
        raise env_error(exc, path) from exc


def _run(files, out, step, *, secret: bool):
    """``step(src_file, dst_file) -> result`` over every input, atomically."""
    results = []
    single = len(files) == 1 and not os.path.isdir(out)
    if single:
        target = AtomicOutput(out, secret=secret)
        try:
            dst = target.open()
        except AnonymousUnsupported:
            target = AtomicOutput(out)
            dst = target.open()
        try:
            with _open(files[0]) as src:
                results.append((files[0], out, _step(step, src, dst, files[0])))
            target.commit()
        finally:
            if not target.committed:
                target.abort()
        return results
    staging = StagingDir(out)
    with staging as folder:
        if secret:
            os.chmod(folder, 0o700)
        seen = set()
        for path in files:
            with _open(path) as src:
                tmp = AtomicOutput(os.path.join(folder, ".incoming"), secret=secret)
                try:
                    try:
                        dst = tmp.open()
                    except AnonymousUnsupported:
                        tmp = AtomicOutput(os.path.join(folder, ".incoming"))
                        dst = tmp.open()
                    result = _step(step, src, dst, path)
                    name = f"{result.sop_instance_uid}.dcm"
                    if name in seen:
                        warn(path, "the same SOP Instance as an earlier input: skipped")
                        continue
                    seen.add(name)
                    tmp.target = os.path.join(folder, name)
                    tmp.commit()
                finally:
                    if not tmp.committed:
                        tmp.abort()
            results.append((path, os.path.join(out, name), result))
        if secret:
            os.chmod(folder, 0o755)
        staging.commit()
    return results


def _step(step, src, dst, path):
    try:
        return step(src, dst)
    except MediasecError as exc:
        raise exc.with_path(path)
    except OSError as exc:
        raise env_error(exc, path) from exc


def _mapping_key(var):
    if not var:
        return None
    if var not in os.environ:
        raise UsageError(f"environment variable {var} (named by --mapping-key-env) is not set",
                         code="USAGE_ENV_UNSET")
    key = os.environ[var].encode("utf-8", "surrogateescape")
    if len(key) < 16:
        raise UsageError("the mapping key must be at least 16 bytes", code="USAGE_WEAK_KEY")
    return key


@cli.command("deidentify")
@click.argument("inputs", nargs=-1, required=True, type=click.Path())
@click.option("-o", "--output", "out", required=True, type=click.Path(),
              help="Output file (one input) or a new folder.")
@click.option("--option", "options", multiple=True, type=click.Choice(list(OPTIONS)),
              help="A PS3.15 E.3 option on top of the Basic Profile (repeatable).")
@click.option("--escrow-to", multiple=True, type=click.Path(dir_okay=False),
              help="Certificate of a recipient of the encrypted originals (repeatable).")
@click.option("--escrow-password-env", metavar="VAR",
              help="Environment variable holding a password recipient's password.")
@click.option("--no-escrow", is_flag=True, help="Discard the originals (irreversible).")
@click.option("--mapping-key-env", metavar="VAR", help="Environment variable holding the "
              "key for UIDs, pseudonyms and date shifts (same key, same output).")
@click.option("--cipher", type=click.Choice(list(CIPHERS)), default="aes-256",
              show_default=True)
@click.option("--pbkdf2-iterations", type=click.IntRange(1, 10_000_000), default=600_000,
              show_default=True)
@click.option("--allow-legacy", is_flag=True, help="Allow 3DES and RSA under 2048 bits.")
@click.option("--accept-burned-in", is_flag=True, help="Take objects that may carry "
              "identifying pixels or free text (secondary capture, PDF, video, ...).")
@click.option("--json", "json_out", metavar="FILE", help="Write a JSON result ('-' = stdout).")
def deidentify(inputs, out, options, escrow_to, escrow_password_env, no_escrow,
               mapping_key_env, cipher, pbkdf2_iterations, allow_legacy, accept_burned_in,
               json_out):
    """De-identify DICOM files (PS3.15 E.1 Basic Profile and options), the originals
    encrypted inside each file for the escrow recipients."""
    policy = AlgorithmPolicy(allow_legacy=allow_legacy)
    recipients = []
    for p in escrow_to:
        for c in read_certificates(p, "escrow certificate"):
            try:
                recipients.append(KeyTransportRecipient(c, policy=policy))
            except MediasecError as exc:
                raise exc.with_path(p)
    pw = read_password(escrow_password_env)
    if pw is not None:
        try:
            recipients.append(PasswordRecipient(pw, iterations=pbkdf2_iterations,
                                                policy=policy))
        except MediasecError as exc:
            raise exc.with_path(escrow_password_env)
    job = DeidJob(options=options, recipients=recipients, escrow=not no_escrow,
                  cipher=cipher, policy=policy, mapping_key=_mapping_key(mapping_key_env),
                  accept_burned_in=accept_burned_in)
    files = _inputs(inputs)
    results = _run(files, out, job.deidentify, secret=False)
    for path, _, r in results:
        for f in r.findings:
            if f.outcome in (Outcome.WARNING, Outcome.FAILED):
                warn(path, f.message)
    write_json(json_out, "mediasec.deidentify/1", {
        "output": out, "options": list(job.profile.options),
        "method_codes": [c for c, _ in job.profile.codes],
        "longitudinal_temporal": job.profile.temporal,
        "escrow": ({"recipients": len(recipients), "cipher": cipher} if recipients else None),
        "mapping": "keyed" if mapping_key_env else "random per job",
        "files": [{"input": p, "output": o, **r.to_dict()} for p, o, r in results]})


@cli.command("reidentify")
@click.argument("inputs", nargs=-1, required=True, type=click.Path())
@click.option("-o", "--output", "out", required=True, type=click.Path(),
              help="Output file (one input) or a new folder.")
@with_options(key_options[:5])
@click.option("--json", "json_out", metavar="FILE", help="Write a JSON result ('-' = stdout).")
def reidentify_cmd(inputs, out, key, cert, key_password_env, password_env, ask_password,
                   json_out):
    """Restore the original attributes of de-identified files from their Encrypted
    Attributes Sequence, with a recipient key or the password."""
    decrypters = load_keys(key, cert, key_password_env, password_env, ask_password)[0]
    if not decrypters:
        raise UsageError("give --key (and --cert) or --password-env VAR to re-identify",
                         code="USAGE_NO_KEY")
    files = _inputs(inputs)
    results = _run(files, out, lambda s, d: reidentify(s, d, decrypters=decrypters),
                   secret=True)
    for path, _, r in results:
        for f in r.findings:
            warn(path, f.message)
    write_json(json_out, "mediasec.reidentify/1", {
        "output": out,
        "files": [{"input": p, "output": o, **r.to_dict()} for p, o, r in results]})
