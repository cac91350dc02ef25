"""``protect``, ``unprotect`` and ``inspect``: one Secure DICOM File at a time."""

from __future__ import annotations

import os

import click

from mediasec.api import (InspectRequest, ProtectRequest, UnprotectRequest, inspect, protect,
                          unprotect)
from mediasec.cli._protection import (key_options, load_keys, load_protection, load_trust,
                                      protection_options, with_options)
from mediasec.cli.main import cli
from mediasec.cli.render import (check_side_outputs, json_and_operand, json_option,
                                 side_outputs_or_undo, warn, write_json)
from mediasec.cms.secure import ProtectOptions
from mediasec.io.fs import check_new_output
from mediasec.policy import TrustContext
from mediasec.report import Outcome

__all__ = []


@cli.command("protect")
@click.argument("src", type=click.Path(dir_okay=False))
@click.option("-o", "--output", "out", required=True, type=click.Path(dir_okay=False),
              help="The Secure DICOM File to write.")
@protection_options
@click.option("--force", is_flag=True, help="Replace OUT if it exists (never the input).")
@click.option("--json", "json_out", metavar="FILE|-", help="Write a JSON result ('-' = stdout).")
def protect_cmd(src, out, json_out, force, cipher, digest, framing, **flags):
    """Turn one DICOM file into a Secure DICOM File (signed or digested, then enveloped)."""
    check_new_output(out, force=force, inputs=(src,))  # before any prompt
    check_side_outputs(json_out, inputs=(src,), outputs=(out,))
    existed = os.path.lexists(out)
    policy, recipients, signers = load_protection(subject=src, cipher=cipher, digest=digest,
                                                  **flags)
    result = protect(ProtectRequest(src, out, recipients, signers, policy=policy,
                                    options=ProtectOptions(cipher=cipher, framing=framing,
                                                           digest=digest), force=force))
    body = result.to_dict()
    with side_outputs_or_undo(out, existed=existed):
        write_json(json_out, body.pop("schema"), body)


@cli.command("unprotect")
@click.argument("src", type=click.Path(dir_okay=False))
@click.option("-o", "--output", "out", required=True, type=click.Path(dir_okay=False),
              help="The plain DICOM file to write.")
@with_options(key_options)
@click.option("--force", is_flag=True, help="Replace OUT if it exists (never the input).")
@click.option("--strict", is_flag=True, help="Exit 1 (and write nothing) on any warning or "
              "indeterminate outcome too, e.g. signatures not checked against a trust anchor.")
@click.option("--json", "json_out", metavar="FILE|-", help="Write a JSON result ('-' = stdout).")
def unprotect_cmd(src, out, key, cert, key_password_env, password_env, ask_password, trust,
                  json_out, force, strict):
    """Decrypt a Secure DICOM File and check its digest or signatures.

    The plain file appears at OUT only when every check passed; until then it has no
    name on disk.
    """
    check_new_output(out, force=force, inputs=(src,))  # before any prompt
    check_side_outputs(json_out, inputs=(src,), outputs=(out,))
    existed = os.path.lexists(out)
    report = unprotect(UnprotectRequest(
        src, out, load_keys(key, cert, key_password_env, password_env, ask_password),
        trust=load_trust(trust) or TrustContext(), force=force, strict=strict))
    for f in report.findings:
        if f.outcome in (Outcome.WARNING, Outcome.INDETERMINATE):
            warn(src, f.message)
    if not trust and any(f.code == "SIG_TRUST_NOT_CHECKED" for f in report.findings):
        warn(src, "signatures were not checked against any trust anchor (no --trust given)")
    if report.dataset_note:
        warn(src, report.dataset_note)
    for s in report.dataset_signatures.signatures if report.dataset_signatures else ():
        if s.outcome is Outcome.FAILED:
            warn(src, f"dataset signature {s.mac_id} in {s.path or 'main data set'}: "
                      f"{s.code}: {s.message}")
    with side_outputs_or_undo(out, existed=existed):  # never plaintext without its JSON
        write_json(json_out, "mediasec.unprotect/1", {"input": src, "output": out,
                                                       **report.to_dict()})


@cli.command("inspect")
@click.argument("src", type=click.Path(dir_okay=False), required=False)
@with_options(key_options)
@json_option("Write mediasec.inspect/1 JSON to FILE, or stdout ('-' or no value) "
             "instead of text.")
def inspect_cmd(src, key, cert, key_password_env, password_env, ask_password, trust,
                json_target):
    """Show a file's CMS structure (and, with a key, check it) or its DICOM basics."""
    json_target, src = json_and_operand(json_target, src, "SRC")
    result = inspect(InspectRequest(
        src, load_keys(key, cert, key_password_env, password_env, ask_password),
        trust=load_trust(trust) or TrustContext()))
    body = result.to_dict()
    write_json(json_target, body.pop("schema"), body)
    if json_target == "-":
        pass
    elif result.report is None:
        click.echo(f"{src}: {result.kind} (not protected)")
    else:
        click.echo(_inspect_text(src, body))
    return 1 if result.failed else 0


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
