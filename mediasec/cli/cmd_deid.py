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
from mediasec.deid import DeidJob
from mediasec.deid.files import prepare_reidentify
from mediasec.deid.profile import OPTIONS
from mediasec.errors import MediasecError, UsageError
from mediasec.io.fs import AnonymousUnsupported, AtomicOutput, StagingDir, env_error, fsync_dir
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
    """``step(src_file) -> (Rewritten, result)`` over every input, atomically."""
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
                rewritten, result = _step(step, src, files[0])
                _write(rewritten, dst, out)
            results.append((files[0], out, result))
            target.commit()
        finally:
            if not target.committed:
                target.abort()
        return results
    staging = StagingDir(out)
    with staging as folder:
        # a hidden folder, removed on failure and renamed at the end: no file in it is
        # visible under OUT before every input is done (0700 while it holds plaintext)
        os.chmod(folder, 0o700 if secret else 0o755)
        seen = set()
        for path in files:
            with _open(path) as src:
                rewritten, result = _step(step, src, path)
                name = f"{result.sop_instance_uid}.dcm"
                if name in seen:
                    warn(path, "the same SOP Instance as an earlier input: skipped")
                    continue
                seen.add(name)
                target = os.path.join(folder, name)
                try:
                    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL,
                                 0o600 if secret else 0o644)
                except OSError as exc:
                    raise env_error(exc, os.path.join(out, name)) from exc
                with os.fdopen(fd, "wb", buffering=0) as dst:
                    _write(rewritten, dst, os.path.join(out, name))
                    try:
                        os.fsync(dst.fileno())
                    except OSError as exc:
                        raise env_error(exc, os.path.join(out, name)) from exc
            results.append((path, os.path.join(out, name), result))
        try:
            fsync_dir(folder)
            os.chmod(folder, 0o755)
        except OSError as exc:
            raise env_error(exc, out) from exc
        staging.commit()
    return results


def _write(rewritten, dst, name):
    try:
        rewritten.write_to(dst)
    except OSError as exc:
        raise env_error(exc, name) from exc


def _step(step, src, path):
    try:
        return step(src)
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
    results = _run(files, out, job.prepare, secret=False)
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
        "dangling_references": job.dangling_references(),
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
    decrypters = load_keys(key, cert, key_password_env, password_env, ask_password)
    if not decrypters:
        raise UsageError("give --key (and --cert) or --password-env VAR to re-identify",
                         code="USAGE_NO_KEY")
    files = _inputs(inputs)
    results = _run(files, out, lambda s: prepare_reidentify(s, decrypters=decrypters),
                   secret=True)
    for path, _, r in results:
        for f in r.findings:
            warn(path, f.message)
    write_json(json_out, "mediasec.reidentify/1", {
        "output": out,
        "files": [{"input": p, "output": o, **r.to_dict()} for p, o, r in results]})


# -- build --deidentify ------------------------------------------------------------------------

def deid_build_options(f):
    """The ``build --deidentify`` flags (the de-identification flags of ``deidentify``)."""
    options = [
        click.option("--deidentify", "deid", is_flag=True, help="De-identify every file "
                     "first (PS3.15 E.1): a teaching/research medium; the DICOMDIR, labels "
                     "and PDI pages then hold only de-identified values."),
        click.option("--option", "deid_options", multiple=True,
                     type=click.Choice(list(OPTIONS)), help="With --deidentify: a PS3.15 "
                     "E.3 option (repeatable)."),
        click.option("--escrow-to", "deid_escrow_to", multiple=True,
                     type=click.Path(dir_okay=False), help="With --deidentify: recipient "
                     "certificate of the encrypted originals (repeatable)."),
        click.option("--escrow-password-env", "deid_escrow_password_env", metavar="VAR",
                     help="With --deidentify: password recipient of the originals."),
        click.option("--no-escrow", "deid_no_escrow", is_flag=True,
                     help="With --deidentify: discard the originals (irreversible)."),
        click.option("--mapping-key-env", "deid_mapping_key_env", metavar="VAR",
                     help="With --deidentify: key of the UID/date mapping."),
        click.option("--accept-burned-in", "deid_accept_burned_in", is_flag=True,
                     help="With --deidentify: take objects that may carry burned-in text."),
    ]
    for o in reversed(options):
        f = o(f)
    return f


def deid_job(flags: dict):
    """With ``--deidentify``: the ``DeidJob`` of the build (``BuildRequest.deidentify``);
    without, None. Pops the de-identification flags from ``flags``."""
    deid_flags = {k: flags.pop(k) for k in list(flags) if k.startswith("deid")}
    if not deid_flags.get("deid"):
        if any(v for k, v in deid_flags.items() if k != "deid"):
            raise UsageError("the de-identification flags need --deidentify", code="USAGE")
        return None
    policy = AlgorithmPolicy(allow_legacy=flags.get("allow_legacy", False))
    recipients = []
    for p in deid_flags["deid_escrow_to"]:
        for c in read_certificates(p, "escrow certificate"):
            try:
                recipients.append(KeyTransportRecipient(c, policy=policy))
            except MediasecError as exc:
                raise exc.with_path(p)
    pw = read_password(deid_flags["deid_escrow_password_env"])
    if pw is not None:
        recipients.append(PasswordRecipient(pw, iterations=flags.get("pbkdf2_iterations",
                                                                     600_000), policy=policy))
    return DeidJob(options=deid_flags["deid_options"], recipients=recipients,
                   escrow=not deid_flags["deid_no_escrow"], policy=policy,
                   mapping_key=_mapping_key(deid_flags["deid_mapping_key_env"]),
                   accept_burned_in=deid_flags["deid_accept_burned_in"])
