"""``echo``, ``send`` and ``receive``: DICOM over TLS (PS3.15 Annex B) with pynetdicom.

Flags become a ``TLSConfig`` here; the work is in ``mediasec.net``. Exit codes: 0 done
(every instance sent / echo answered), 1 some instance failed or was not sent (invalid,
unmapped, refused by the peer), 2 usage (bad flags, retired profile, unreadable key), 3 the
peer or the network (TLS refused, association rejected, connection lost).
"""

from __future__ import annotations

import json
import signal
import sys
import threading

import click

from mediasec.cli._protection import key_options, load_keys, load_trust, with_options
from mediasec.cli.main import cli
from mediasec.cli.render import write_json
from mediasec.errors import UsageError
from mediasec.io.keys import read_certificates, read_file

__all__: list[str] = []

_PROFILE_CHOICES = ["bcp195", "strict", "legacy-aes", "basic", "3des", "iscl"]


def tls_options(server: bool):
    opts = [
        click.option("--tls-cert", "tls_cert", multiple=True, type=click.Path(dir_okay=False),
                     help="Our TLS certificate (PEM/DER; chain after it). Repeat with "
                          "--tls-key for a second (RSA + ECDSA) identity."),
        click.option("--tls-key", "tls_key", multiple=True, type=click.Path(dir_okay=False),
                     help="Our TLS private key (PEM, DER or PKCS#12, RSA >= 2048 or EC "
                          ">= P-256)."),
        click.option("--tls-key-password-env", metavar="VAR",
                     help="Environment variable holding the TLS key's passphrase (else a "
                          "prompt on a terminal)."),
        click.option("--tls-ca", "tls_ca", multiple=True, type=click.Path(dir_okay=False),
                     help="Trusted CA certificate(s) for the peer (repeatable; no system "
                          "roots)."),
        click.option("--tls-crl", type=click.Path(dir_okay=False),
                     help="A CRL (PEM) checked for the peer's certificate."),
        click.option("--tls-profile", type=click.Choice(_PROFILE_CHOICES), default="bcp195",
                     show_default=True, help="bcp195 (PS3.15 B.12), strict (B.13), "
                     "legacy-aes (retired AES TLS suite, TLS 1.2 only). basic/3des/iscl are "
                     "retired and refused."),
        click.option("--aet", default="MEDIASEC", show_default=True,
                     help="Our AE title (calling for echo/send, called for receive)."),
    ]
    if server:
        opts.append(click.option("--client-auth", type=click.Choice(["required", "optional"]),
                                 default="required", show_default=True))
    else:
        opts.append(click.option("--no-hostname-check", is_flag=True,
                                 help="Do not match the server certificate to HOST (peers "
                                      "whose certificates carry no subject alternative "
                                      "name)."))
        opts.append(click.option("--timeout", type=click.FloatRange(0.5, 3600), default=15.0,
                                 show_default=True, help="Seconds for connect + TLS handshake."))
    return with_options(opts)


def _tls_config(tls_cert, tls_key, tls_key_password_env, tls_ca, tls_crl, tls_profile,
                check_hostname=True, client_auth="required"):
    from mediasec.net.tls import TLSConfig, check_profile, read_identity
    profile = check_profile(tls_profile)
    if len(tls_cert) > len(tls_key):
        raise UsageError("each --tls-cert needs its --tls-key", code="USAGE")
    identities = []
    for i, key in enumerate(tls_key):
        cert = tls_cert[i] if i < len(tls_cert) else None
        identities.append(read_identity(cert, key, password_env=tls_key_password_env))
    ca = []
    for p in tls_ca:
        ca += read_certificates(p, "TLS CA file")
    crl = read_file(tls_crl, "CRL file") if tls_crl else None
    if profile == "legacy-aes":
        click.echo("mediasec: warning: --tls-profile legacy-aes allows the retired AES TLS "
                   "suite TLS_RSA_WITH_AES_128_CBC_SHA (no forward secrecy); use it only for "
                   "an old PACS", err=True)
    return TLSConfig(identities=tuple(identities), ca=tuple(ca), profile=profile,
                     check_hostname=check_hostname, client_auth=client_auth, crl_pem=crl)


@cli.command("echo")
@click.option("--to", "to", required=True, metavar="AET@HOST:PORT", help="The peer "
              "(port 2762 by default).")
@tls_options(server=False)
@click.option("--json", "json_target", default=None, metavar="FILE|-")
def echo_cmd(to, tls_cert, tls_key, tls_key_password_env, tls_ca, tls_crl, tls_profile, aet,
             no_hostname_check, timeout, json_target):
    """C-ECHO a peer over TLS (checks TLS, certificates and AE titles)."""
    from mediasec import api
    from mediasec.net.scu import parse_peer
    peer = parse_peer(to)
    tls = _tls_config(tls_cert, tls_key, tls_key_password_env, tls_ca, tls_crl, tls_profile,
                      check_hostname=not no_hostname_check)
    result = api.echo(api.EchoRequest(to, tls, calling_aet=aet, timeout=timeout))
    _write_doc(json_target, result.to_dict())
    if json_target != "-":
        t = result.tls
        click.echo(f"{peer}: C-ECHO ok over {t.get('version')} {t.get('cipher')} "
                   f"({result.seconds:.2f} s)")
    return 0


def _write_doc(json_target, doc: dict) -> None:
    if json_target:
        write_json(json_target, doc["schema"], {k: v for k, v in doc.items()
                                                if k not in ("schema", "version")})


@cli.command("send")
@click.argument("sources", nargs=-1, required=True, type=click.Path())
@click.option("--to", "to", required=True, metavar="AET@HOST:PORT")
@tls_options(server=False)
@with_options(key_options)
@click.option("--include-invalid", is_flag=True, help="Also send fully decrypted files whose "
              "checks failed.")
@click.option("--map-patient-id", type=click.Path(dir_okay=False), metavar="CSV",
              help="old_patient_id,new_patient_id[,issuer] per line; unmapped patients are "
                   "not sent.")
@click.option("--patient-id", help="The Patient ID to give every instance.")
@click.option("--issuer", help="Issuer of Patient ID to set with --patient-id/--map-patient-id.")
@click.option("--state", "state_path", type=click.Path(dir_okay=False), metavar="FILE",
              help="Resume file: instances the peer confirmed (UIDs and digests only) are "
                   "skipped on a re-run.")
@click.option("--max-pdu", type=click.IntRange(0, 1 << 26), default=0, show_default=True,
              help="Largest PDU we accept from the peer (0: no limit).")
@click.option("--json", "json_target", default=None, metavar="FILE|-",
              help="Write the mediasec.send/1 result.")
def send_cmd(sources, to, tls_cert, tls_key, tls_key_password_env, tls_ca, tls_crl,
             tls_profile, aet, no_hostname_check, timeout, key, cert, key_password_env,
             password_env, ask_password, trust, include_invalid, map_patient_id, patient_id,
             issuer, state_path, max_pdu, json_target):
    """Send a received disc (image or folder), a folder or files to a PACS over TLS."""
    from mediasec import api
    from mediasec.media.reconcile import PatientMapping, parse_patient_map
    from mediasec.net.scu import parse_peer
    peer = parse_peer(to)
    if map_patient_id and patient_id:
        raise UsageError("--map-patient-id and --patient-id exclude each other", code="USAGE")
    if issuer and not (patient_id or map_patient_id):
        raise UsageError("--issuer goes with --patient-id or --map-patient-id", code="USAGE")
    mapping = None
    if map_patient_id:
        try:
            text = read_file(map_patient_id, "patient ID map").decode("utf-8")
        except UnicodeDecodeError:
            raise UsageError("the patient ID map is not UTF-8 text", path=map_patient_id,
                             code="MAP_MALFORMED") from None
        mapping = parse_patient_map(text, path=map_patient_id)
        if issuer:
            mapping = {k: PatientMapping(v.new_id, v.issuer or issuer)
                       for k, v in mapping.items()}
    patient = PatientMapping(patient_id, issuer) if patient_id else None
    tls = _tls_config(tls_cert, tls_key, tls_key_password_env, tls_ca, tls_crl, tls_profile,
                      check_hostname=not no_hostname_check)
    decrypters = load_keys(key, cert, key_password_env, password_env, ask_password)
    result = api.send(api.SendRequest(
        list(sources), to, tls, calling_aet=aet, decrypters=decrypters,
        trust=load_trust(trust), include_invalid=include_invalid, mapping=mapping,
        patient=patient, state=state_path, timeout=timeout, max_pdu=max_pdu))
    doc = result.to_dict()
    _write_doc(json_target, doc)
    if json_target != "-":
        c = doc["counts"]
        click.echo(f"{peer}: {c['sent']} sent, {c['already-sent']} already sent, "
                   f"{c['failed']} failed, {c['not-sent']} not sent, {c['skipped']} skipped "
                   f"({doc['bytes_sent']} bytes, {doc['seconds']:.2f} s, "
                   f"{doc['tls'].get('version')})")
        for cls, su in doc["secure_use"].items():
            click.echo(f"  secure use {cls}: {su['note']}")
    for r in doc["instances"]:
        if r["status"] in ("failed", "not-sent"):
            bad = r["reasons"][-1]
            click.echo(f"mediasec: {r['path']}: {bad['code']}: {bad['message']}", err=True)
    return 1 if result.failed else 0


@cli.command("receive")
@click.option("-o", "--output", "output", required=True, type=click.Path(file_okay=False),
              help="Folder to store into (made if missing).")
@click.option("--fileset", is_flag=True, help="Store as a DICOM File-set (File IDs from the "
              "UIDs) and write its DICOMDIR when the receiver stops.")
@click.option("--port", type=click.IntRange(0, 65535), default=2762, show_default=True,
              help="TCP port (0: any free port, printed at start).")
@click.option("--bind", default="0.0.0.0", show_default=True, help="Address to listen on.")
@tls_options(server=True)
@click.option("--allow-aet", "allow_aets", multiple=True, help="Calling AE title allowed "
              "(repeatable; default: any).")
@click.option("--allow-subject", "allow_subjects", multiple=True, help="Client certificate "
              "subject allowed, RFC 4514 (repeatable; default: any the CA signed).")
@click.option("--quarantine", type=click.Path(file_okay=False), help="Store refused "
              "instances here (still refused to the sender).")
@click.option("--check-signatures", is_flag=True, help="Refuse instances whose dataset "
              "signatures (PS3.15 Annex C) fail; valid ones are logged.")
@click.option("--signature-trust", multiple=True, type=click.Path(dir_okay=False),
              help="Trust anchors for --check-signatures (repeatable; without one, a "
                   "signature is checked but its signer's trust is not).")
@click.option("--max-associations", type=click.IntRange(1, 1000), default=32, show_default=True)
@click.option("--max-pdu", type=click.IntRange(4096, 1 << 26), default=262144,
              show_default=True, help="Largest PDU a peer may send us (bytes held per "
              "association).")
@click.option("--handshake-timeout", type=click.FloatRange(0.1, 600), default=10.0,
              show_default=True)
@click.option("--idle-timeout", type=click.FloatRange(0.5, 3600), default=120.0,
              show_default=True, help="Seconds of silence before an association is dropped.")
@click.option("--json", "json_target", default=None, metavar="FILE|-",
              help="At shutdown, write the mediasec.receive/1 summary.")
def receive_cmd(output, fileset, port, bind, tls_cert, tls_key, tls_key_password_env, tls_ca,
                tls_crl, tls_profile, aet, client_auth, allow_aets, allow_subjects, quarantine,
                check_signatures, signature_trust, max_associations, max_pdu, handshake_timeout,
                idle_timeout, json_target):
    """Storage SCP over TLS: store what peers send, bit for bit, until SIGTERM/SIGINT."""
    from mediasec import api
    tls = _tls_config(tls_cert, tls_key, tls_key_password_env, tls_ca, tls_crl, tls_profile,
                      client_auth=client_auth)
    sig_check = _signature_hook(signature_trust) if check_signatures else None

    def on_event(ev: dict) -> None:
        if ev["event"] in ("tls_refused", "rejected", "refused"):
            who = ev.get("peer") or ev.get("calling_aet") or ev.get("sop_instance_uid")
            click.echo(f"mediasec: {who}: {ev['code']}: {ev['message']}", err=True)

    request = api.ReceiveRequest(output, tls, fileset=fileset, aet=aet, bind=bind, port=port,
                                 allow_aets=tuple(allow_aets),
                                 allow_subjects=tuple(allow_subjects), quarantine=quarantine,
                                 signature_check=sig_check, max_associations=max_associations,
                                 handshake_timeout=handshake_timeout, idle_timeout=idle_timeout,
                                 max_pdu=max_pdu)
    stop = threading.Event()

    def on_signal(signum, frame):
        stop.set()
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    rx = api.receive(request, on_event=on_event)
    click.echo(json.dumps({"event": "listening", "host": bind, "port": rx.port,
                           "aet": aet, "profile": tls.profile, "fileset": fileset}))
    sys.stdout.flush()
    while not stop.wait(0.5):
        pass
    result = rx.stop()
    doc = result.to_dict()
    _write_doc(json_target, doc)
    c = doc["counts"]
    click.echo(f"{output}: {c['stored']} stored, {c['refused']} refused, "
               f"{c['associations']} associations", err=json_target == "-")
    if result.error is not None:
        raise result.error
    return 0


def _signature_hook(trust_paths):
    """``--check-signatures``: each received object's dataset signatures (PS3.15 Annex C),
    checked against ``--signature-trust`` anchors when given."""
    from mediasec.cli._protection import load_trust
    from mediasec.media.dsig_check import signature_findings

    trust = load_trust(trust_paths)
    return lambda f: signature_findings(f, trust)
