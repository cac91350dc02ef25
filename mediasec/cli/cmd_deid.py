"""``deidentify`` and ``reidentify``: PS3.15 Annex E attribute confidentiality.

Flags become a ``mediasec.deid.DeidJob`` (or decrypters) in a request to
``mediasec.api.deidentify``/``reidentify``, which do the work (``io/rewrite.py``: one output
file for one input file, else a new folder of ``<SOP Instance UID>.dcm``, atomically).
"""

from __future__ import annotations

import os

import click

from mediasec.api import DeidentifyRequest, ReidentifyRequest, deidentify, reidentify
from mediasec.cli._protection import key_options, load_keys, with_options
from mediasec.cli.main import cli
from mediasec.cli.render import warn, write_json
from mediasec.cms.keys import KeyTransportRecipient, PasswordRecipient
from mediasec.deid.profile import OPTIONS
from mediasec.errors import MediasecError, UsageError
from mediasec.io.keys import read_certificates, read_password
from mediasec.policy import CIPHERS, AlgorithmPolicy
from mediasec.report import Outcome

__all__ = []


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


def _deid_job(*, options, escrow_to, escrow_password_env, no_escrow, mapping_key_env, cipher,
              pbkdf2_iterations, allow_legacy, accept_burned_in):
    """The ``DeidJob`` the de-identification flags ask for (``deidentify`` and
    ``build --deidentify``): escrow recipients from certificates and/or a password."""
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
    from mediasec.deid import DeidJob   # pydicom: imported when de-identifying only
    return DeidJob(options=options, recipients=recipients, escrow=not no_escrow,
                   cipher=cipher, policy=policy, mapping_key=_mapping_key(mapping_key_env),
                   accept_burned_in=accept_burned_in)


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
def deidentify_cmd(inputs, out, options, escrow_to, escrow_password_env, no_escrow,
                   mapping_key_env, cipher, pbkdf2_iterations, allow_legacy, accept_burned_in,
                   json_out):
    """De-identify DICOM files (PS3.15 E.1 Basic Profile and options), the originals
    encrypted inside each file for the escrow recipients."""
    job = _deid_job(options=options, escrow_to=escrow_to,
                    escrow_password_env=escrow_password_env, no_escrow=no_escrow,
                    mapping_key_env=mapping_key_env, cipher=cipher,
                    pbkdf2_iterations=pbkdf2_iterations, allow_legacy=allow_legacy,
                    accept_burned_in=accept_burned_in)
    result = deidentify(DeidentifyRequest(inputs, out, job))
    _warn(result, (Outcome.WARNING, Outcome.FAILED))
    body = result.to_dict()
    write_json(json_out, body.pop("schema"), body)


def _warn(result, outcomes) -> None:
    for path in result.duplicates:
        warn(path, "the same SOP Instance as an earlier input: skipped")
    for path, _, r in result.files:
        for f in r.findings:
            if outcomes is None or f.outcome in outcomes:
                warn(path, f.message)


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
    result = reidentify(ReidentifyRequest(
        inputs, out, load_keys(key, cert, key_password_env, password_env, ask_password)))
    _warn(result, None)
    body = result.to_dict()
    write_json(json_out, body.pop("schema"), body)


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
    return _deid_job(options=deid_flags["deid_options"],
                     escrow_to=deid_flags["deid_escrow_to"],
                     escrow_password_env=deid_flags["deid_escrow_password_env"],
                     no_escrow=deid_flags["deid_no_escrow"],
                     mapping_key_env=deid_flags["deid_mapping_key_env"], cipher="aes-256",
                     pbkdf2_iterations=flags.get("pbkdf2_iterations", 600_000),
                     allow_legacy=flags.get("allow_legacy", False),
                     accept_burned_in=deid_flags["deid_accept_burned_in"])
