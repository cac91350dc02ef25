"""DICOM over TLS on loopback: our echo/send/receive against DCMTK (storescp, storescu,
echoscu) and openssl, and against ourselves. Random free ports on 127.0.0.1 only."""

from __future__ import annotations

import json
import os
import pathlib
import re
import signal
import socket
import struct
import subprocess
import sys
import threading
import time

import pydicom
import pytest

import _dicomgen as g
from _tlspki import make_tls_pki
from conftest import DICOM, PKI, assert_one_line_error, peer, run_cli

PLAIN = ["ct1.dcm", "ct2.dcm", "mr1.dcm", "ct3_ile.dcm", "ct_jpeg.dcm", "sr1.dcm"]


@pytest.fixture(scope="session")
def tlspki(tmp_path_factory):
    return make_tls_pki(tmp_path_factory.mktemp("tlspki"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def dataset_bytes(path) -> bytes:
    """The data set after the File Meta group (what travels in a C-STORE)."""
    data = pathlib.Path(path).read_bytes()
    assert data[128:132] == b"DICM"
    (glen,) = struct.unpack("<I", data[140:144])
    return data[144 + glen:]


def tls_args(pki, who="client", *extra):
    return ("--tls-cert", pki / f"{who}.crt", "--tls-key", pki / f"{who}.key",
            "--tls-ca", pki / "ca.crt", *extra)


class Receiver:
    """``mediasec receive`` in a subprocess on a random port."""

    def __init__(self, pki, out, *extra, who="server"):
        self.out = pathlib.Path(out)
        self.out.mkdir(parents=True, exist_ok=True)
        self.report = self.out.parent / f"{self.out.name}-report.json"
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "mediasec", "receive", "-o", str(out), "--port", "0",
             "--bind", "127.0.0.1", *map(str, tls_args(pki, who)),
             "--json", str(self.report), *map(str, extra)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        line = self.proc.stdout.readline()
        assert line, self.proc.stderr.read()
        self.port = json.loads(line)["port"]

    def to(self, aet="MEDIASEC", host="127.0.0.1"):
        return f"{aet}@{host}:{self.port}"

    def stop(self) -> tuple[int, str, dict]:
        self.proc.send_signal(signal.SIGTERM)
        out, err = self.proc.communicate(timeout=30)
        doc = json.loads(self.report.read_text()) if self.report.exists() else {}
        return self.proc.returncode, err, doc

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


@pytest.fixture
def receiver(tlspki, tmp_path):
    started = []

    def start(*extra, out=None, who="server"):
        r = Receiver(tlspki, out or tmp_path / f"rx{len(started)}", *extra, who=who)
        started.append(r)
        return r
    yield start
    for r in started:
        r.kill()


class StoreSCP:
    """DCMTK storescp with TLS, bit-preserving, all transfer syntaxes."""

    def __init__(self, pki, out, *extra, who="server", accept_all=True):
        exe = peer("storescp")
        self.out = pathlib.Path(out)
        self.out.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.proc = subprocess.Popen(
            [exe, "-aet", "STORESCP", "-od", str(out), "+B", *(["+xa"] if accept_all else []),
             *extra,
             "+tls", str(pki / f"{who}.key"), str(pki / f"{who}.crt"), "-pw",
             "+cf", str(pki / "ca.crt"), str(self.port)],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        for _ in range(100):
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", self.port)) == 0:
                    break
            time.sleep(0.05)

    def to(self, host="127.0.0.1"):
        return f"STORESCP@{host}:{self.port}"

    def files(self):
        return sorted(p for p in self.out.iterdir() if p.is_file())

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@pytest.fixture
def storescp(tlspki, tmp_path):
    started = []

    def start(*extra, who="server", accept_all=True):
        s = StoreSCP(tlspki, tmp_path / f"scp{len(started)}", *extra, who=who,
                     accept_all=accept_all)
        started.append(s)
        return s
    yield start
    for s in started:
        s.stop()


def send_json(to, *args, pki, who="client"):
    res = run_cli("send", *args, "--to", to, *tls_args(pki, who), "--json", "-")
    doc = json.loads(res.stdout) if res.stdout.strip().startswith("{") else None
    return res, doc


def by_uid(files) -> dict:
    return {str(pydicom.dcmread(p, stop_before_pixels=True).SOPInstanceUID): p for p in files}


# -- interop --------------------------------------------------------------------------------

@pytest.mark.peer("storescp")
def test_send_to_storescp_over_tls_is_bit_preserving(storescp, tlspki):
    scp = storescp()
    srcs = [DICOM / n for n in PLAIN]
    res, doc = send_json(scp.to("localhost"), *srcs, pki=tlspki)
    assert res.code == 0, res
    assert doc["schema"] == "mediasec.send/1" and doc["counts"]["sent"] == len(srcs)
    assert doc["tls"]["version"] in ("TLSv1.2", "TLSv1.3")
    # DCMTK's storescp never answers the Secure Use negotiation: reported as such
    assert all(not su["answered"] for su in doc["secure_use"].values())
    got = by_uid(scp.files())
    for src in srcs:
        uid = str(pydicom.dcmread(src, stop_before_pixels=True).SOPInstanceUID)
        assert dataset_bytes(got[uid]) == dataset_bytes(src), src.name
        ts = pydicom.dcmread(src, stop_before_pixels=True).file_meta.TransferSyntaxUID
        assert pydicom.dcmread(got[uid]).file_meta.TransferSyntaxUID == ts


@pytest.mark.peer("storescu")
def test_dcmtk_echoscu_and_storescu_to_our_receive(receiver, tlspki, tmp_path):
    rx = receiver()
    key, crt, ca = tlspki / "client.key", tlspki / "client.crt", tlspki / "ca.crt"
    common = ["-aet", "DCMTK", "-aec", "MEDIASEC", "+tls", str(key), str(crt), "-pw",
              "+cf", str(ca), "127.0.0.1", str(rx.port)]
    e = subprocess.run([peer("echoscu"), *common], capture_output=True, text=True)
    assert e.returncode == 0, e.stderr
    srcs = [str(DICOM / n) for n in ("ct1.dcm", "mr1.dcm", "sr1.dcm")]
    s = subprocess.run([peer("storescu"), *common[:-2], "127.0.0.1", str(rx.port), *srcs],
                       capture_output=True, text=True)
    assert s.returncode == 0, s.stdout + s.stderr
    code, err, doc = rx.stop()
    assert code == 0, err
    assert doc["counts"]["stored"] == 3
    got = by_uid(p for p in rx.out.iterdir())
    for src in srcs:
        want = pydicom.dcmread(src)
        have = pydicom.dcmread(got[str(want.SOPInstanceUID)])
        assert have == want          # storescu may re-encode: element by element
    assert any(ev.get("calling_aet") == "DCMTK" and ev.get("version") for ev in doc["events"])


def test_ours_to_ours_byte_identical_with_secure_use(receiver, tlspki, tmp_path):
    rx = receiver()
    srcs = [DICOM / n for n in PLAIN]
    res, doc = send_json(rx.to("localhost"), *srcs, pki=tlspki)
    assert res.code == 0, res
    for cls, su in doc["secure_use"].items():
        assert su["answered"] and su["level_of_support"] == 2 and su["digital_signature"] == 3
    code, err, rdoc = rx.stop()
    assert code == 0 and rdoc["counts"]["stored"] == len(srcs)
    got = by_uid(rx.out.iterdir())
    for src in srcs:
        uid = str(pydicom.dcmread(src, stop_before_pixels=True).SOPInstanceUID)
        assert dataset_bytes(got[uid]) == dataset_bytes(src)
    # echo, too
    e = run_cli("echo", "--to", rx.to(), *tls_args(tlspki))
    assert e.code != 0   # the receiver stopped: a clear environment error
    assert_one_line_error(e, 3, "connection")


@pytest.mark.peer("storescp")
def test_secure_disc_send_with_patient_map_into_storescp(storescp, tlspki, tmp_path):
    from _media import KEYS, PROTECT, build, make_pile
    src = make_pile(tmp_path)
    disc = tmp_path / "disc.iso"
    build(src, disc, "--profile", "STD-GEN-SEC-CD", *PROTECT)
    csv = tmp_path / "map.csv"
    csv.write_text("old_patient_id,new_patient_id,issuer\nP1,LOCAL-001,HOSP\nP2,LOCAL-002,HOSP\n")
    scp = storescp()
    res, doc = send_json(scp.to(), disc, "--map-patient-id", csv, *KEYS, pki=tlspki)
    assert res.code == 0, res
    originals = {str(pydicom.dcmread(p).SOPInstanceUID): pydicom.dcmread(p)
                 for p in src.rglob("*.dcm")}
    got = by_uid(scp.files())
    assert set(got) == set(originals) and doc["counts"]["sent"] == len(originals)
    for uid, want in originals.items():
        have = pydicom.dcmread(got[uid])
        new = {"P1": "LOCAL-001", "P2": "LOCAL-002"}[want.PatientID]
        assert have.PatientID == new and have.IssuerOfPatientID == "HOSP"
        item = have.OriginalAttributesSequence[-1]
        assert item.ReasonForTheAttributeModification == "COERCE"
        assert item.ModifiedAttributesSequence[0].PatientID == want.PatientID
        assert item.ModifyingSystem.startswith("mediasec")
        for kw in ("PatientID", "IssuerOfPatientID", "OriginalAttributesSequence"):
            for ds in (have, want):
                if kw in ds:
                    delattr(ds, kw)
        assert have == want          # nothing else changed
    # no plaintext was written anywhere near the disc
    assert not list(tmp_path.glob("*.dcm"))


@pytest.mark.peer("storescp")
def test_conversion_only_when_the_peer_refuses_the_original_syntax(storescp, tlspki):
    scp = storescp(accept_all=False)         # uncompressed syntaxes only
    srcs = [DICOM / "ct1.dcm", DICOM / "mr2_deflate.dcm", DICOM / "ct_jpeg.dcm"]
    res, doc = send_json(scp.to(), *srcs, pki=tlspki)
    assert res.code == 1, res                 # the JPEG one could not go
    st = {pathlib.Path(r["path"]).name: r for r in doc["instances"]}
    assert st["ct1.dcm"]["status"] == "sent"
    assert st["ct1.dcm"]["sent_transfer_syntax"] == st["ct1.dcm"]["transfer_syntax"]
    defl = st["mr2_deflate.dcm"]
    assert defl["status"] == "sent" and defl["sent_transfer_syntax"] == "1.2.840.10008.1.2.1"
    assert st["ct_jpeg.dcm"]["status"] == "failed"
    assert st["ct_jpeg.dcm"]["reasons"][-1]["code"] == "NET_TS_REFUSED"
    assert "NET_TS_REFUSED" in res.stderr
    got = by_uid(scp.files())
    for src in srcs[:2]:
        want = pydicom.dcmread(src)
        have = pydicom.dcmread(got[str(want.SOPInstanceUID)])
        assert have == want
    ct1 = str(pydicom.dcmread(srcs[0]).SOPInstanceUID)
    assert dataset_bytes(got[ct1]) == dataset_bytes(srcs[0])


def test_allow_subject_and_pkcs12_key(receiver, tlspki, tmp_path):
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.serialization import pkcs12
    from cryptography import x509
    rx = receiver("--allow-subject", "CN=client2,O=mediasec test")
    key = serialization.load_pem_private_key((tlspki / "client2.key").read_bytes(), None)
    cert = x509.load_pem_x509_certificate((tlspki / "client2.crt").read_bytes())
    p12 = tmp_path / "client2.p12"
    p12.write_bytes(pkcs12.serialize_key_and_certificates(
        b"c2", key, cert, None, serialization.BestAvailableEncryption(b"s3cret")))
    args = ("echo", "--to", rx.to(), "--tls-key", p12, "--tls-ca", tlspki / "ca.crt",
            "--tls-key-password-env", "TLS_PW")
    ok = run_cli(*args, env={"TLS_PW": "s3cret"})
    assert ok.code == 0, ok
    bad = run_cli(*args, env={"TLS_PW": "wrong"})
    assert_one_line_error(bad, 2, "wrong passphrase")
    r = run_cli("echo", "--to", rx.to(), *tls_args(tlspki))      # CN=client: not allowed
    assert_one_line_error(r, 3, "rejected")
    code, err, doc = rx.stop()
    assert any(ev.get("code") == "NET_SUBJECT_NOT_ALLOWED" for ev in doc["events"])


def test_patient_not_in_map_is_not_sent(receiver, tlspki, tmp_path):
    rx = receiver()
    csv = tmp_path / "map.csv"
    csv.write_text("SOMEONE_ELSE,X\n")
    res, doc = send_json(rx.to(), DICOM / "ct1.dcm", "--map-patient-id", csv, pki=tlspki)
    assert res.code == 1
    assert doc["instances"][0]["status"] == "not-sent"
    assert doc["instances"][0]["reasons"][-1]["code"] == "PATIENT_NOT_MAPPED"
    assert "PATIENT_NOT_MAPPED" in res.stderr
    assert list(rx.out.iterdir()) == []


def test_invalid_instance_not_sent_unless_asked(receiver, tlspki, tmp_path):
    from _media import KEYS, PROTECT, build, instances
    src = tmp_path / "pile"
    g.ct_series(src, 2)
    folder = tmp_path / "SEC"
    build(src, folder, "--profile", "STD-GEN-SEC-USB-JPEG", *PROTECT)
    victim = instances(folder)[0]
    data = bytearray(victim.read_bytes())
    data[-40] ^= 0x01                   # tamper with the ciphertext's last blocks
    victim.write_bytes(bytes(data))
    rx = receiver()
    res, doc = send_json(rx.to(), folder, *KEYS, pki=tlspki)
    assert res.code == 1, res
    st = sorted(r["status"] for r in doc["instances"])
    assert st == ["not-sent", "sent"]
    bad = next(r for r in doc["instances"] if r["status"] == "not-sent")
    assert bad["reasons"][-1]["code"] == "SEND_INVALID"
    assert len(list(rx.out.iterdir())) == 1


# -- refusals -------------------------------------------------------------------------------

def test_refusals_at_our_receiver(receiver, tlspki):
    rx = receiver("--allow-aet", "GOODSCU")
    ok = run_cli("echo", "--to", rx.to(), *tls_args(tlspki), "--aet", "GOODSCU")
    assert ok.code == 0, ok
    # calling AE title not on the allow-list
    r = run_cli("echo", "--to", rx.to(), *tls_args(tlspki), "--aet", "STRANGER")
    assert_one_line_error(r, 3, "rejected", "calling AE title")
    # client certificate from an untrusted CA
    r = run_cli("echo", "--to", rx.to(), "--aet", "GOODSCU", *tls_args(tlspki, "rogue"))
    assert_one_line_error(r, 3, "TLS refused")
    # expired client certificate
    r = run_cli("echo", "--to", rx.to(), "--aet", "GOODSCU", *tls_args(tlspki, "expired"))
    assert_one_line_error(r, 3, "TLS refused")
    code, err, doc = rx.stop()
    assert code == 0
    codes = [ev["code"] for ev in doc["events"] if ev["event"] in ("tls_refused", "rejected")]
    assert "NET_AET_NOT_ALLOWED" in codes
    assert "TLS_UNTRUSTED_CA" in codes and "TLS_CERT_EXPIRED" in codes, codes
    assert "TLS_UNTRUSTED_CA" in err and "TLS_CERT_EXPIRED" in err


@pytest.mark.peer("echoscu")
def test_refusals_of_dcmtk_clients(receiver, tlspki):
    rx = receiver()
    ca = str(tlspki / "ca.crt")
    base = [peer("echoscu"), "-aec", "MEDIASEC"]
    # no client certificate
    r = subprocess.run([*base, "+tls", str(tlspki / "client.key"),
                        str(tlspki / "client.crt"), "-pw", "+cf", ca, "127.0.0.1",
                        str(rx.port)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr   # control: a good client passes
    r = subprocess.run([*base, "+tla", "+cf", ca, "127.0.0.1", str(rx.port)],
                       capture_output=True, text=True)
    assert r.returncode != 0
    # a peer offering only the weak (retired AES TLS) suite, TLS 1.2 CBC
    r = subprocess.run([*base, "+pa", "+tls", str(tlspki / "client.key"),
                        str(tlspki / "client.crt"), "-pw", "+cf", ca, "127.0.0.1",
                        str(rx.port)], capture_output=True, text=True)
    assert r.returncode != 0
    # TLS 1.1 only (openssl s_client)
    s = subprocess.run([peer("openssl"), "s_client", "-connect", f"127.0.0.1:{rx.port}",
                        "-tls1_1", "-cipher", "DEFAULT:@SECLEVEL=0", "-cert",
                        str(tlspki / "client.crt"), "-key", str(tlspki / "client.key"),
                        "-CAfile", ca], input="", capture_output=True, text=True, timeout=20)
    assert s.returncode != 0 and "Cipher is (NONE)" in s.stdout + s.stderr or \
        "protocol version" in (s.stdout + s.stderr).lower()
    code, err, doc = rx.stop()
    codes = [ev["code"] for ev in doc["events"] if ev["event"] == "tls_refused"]
    assert "TLS_NO_CLIENT_CERT" in codes, codes
    assert "TLS_NO_COMMON_SUITE" in codes, codes
    assert "TLS_VERSION" in codes, codes


@pytest.mark.peer("storescp")
def test_weak_suite_server_refused_unless_legacy_aes(storescp, tlspki):
    scp = storescp("+pa")
    r = run_cli("echo", "--to", scp.to(), *tls_args(tlspki))
    assert_one_line_error(r, 3, "TLS refused")
    assert "suite" in r.stderr or "handshake" in r.stderr
    ok = run_cli("echo", "--to", scp.to(), *tls_args(tlspki), "--tls-profile", "legacy-aes",
                 "--json", "-")
    assert ok.code == 0, ok
    doc = json.loads(ok.stdout)
    assert doc["tls"]["version"] == "TLSv1.2" and doc["tls"]["cipher"] == "AES128-SHA"
    assert "legacy-aes" in ok.stderr and "retired" in ok.stderr


@pytest.mark.peer("openssl")
def test_tls11_only_server_refused(tlspki):
    port = free_port()
    srv = subprocess.Popen([peer("openssl"), "s_server", "-accept", f"127.0.0.1:{port}",
                            "-tls1_1", "-cipher", "DEFAULT:@SECLEVEL=0", "-cert",
                            str(tlspki / "server.crt"), "-key", str(tlspki / "server.key"),
                            "-quiet"], stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL)
    try:
        for _ in range(100):
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    break
            time.sleep(0.05)
        r = run_cli("echo", "--to", f"X@127.0.0.1:{port}", *tls_args(tlspki))
        assert_one_line_error(r, 3, "TLS refused")
        assert "TLS 1.2" in r.stderr
    finally:
        srv.kill()
        srv.wait()


@pytest.mark.peer("storescp")
def test_server_certificate_checks(storescp, tlspki):
    # no SAN: hostname check fails by default, passes with --no-hostname-check
    scp = storescp(who="nosan")
    r = run_cli("echo", "--to", scp.to(), *tls_args(tlspki))
    assert_one_line_error(r, 3, "TLS refused", "mismatch")
    ok = run_cli("echo", "--to", scp.to(), *tls_args(tlspki), "--no-hostname-check")
    assert ok.code == 0, ok
    for who, needle in (("expired", "expired"), ("rogue", "untrusted CA")):
        scp = storescp(who=who)
        r = run_cli("echo", "--to", scp.to(), *tls_args(tlspki))
        assert_one_line_error(r, 3, "TLS refused", needle)


def test_retired_profiles_and_bad_flags(tlspki, tmp_path):
    for name, needle in (("iscl", "ISCL was retired"), ("3des", "3DES"),
                         ("basic", "retired")):
        r = run_cli("echo", "--to", "A@127.0.0.1:1", *tls_args(tlspki), "--tls-profile", name)
        assert_one_line_error(r, 2, needle)
    r = run_cli("echo", "--to", "nohost", *tls_args(tlspki))
    assert_one_line_error(r, 2, "AET@HOST:PORT")
    r = run_cli("echo", "--to", "A@127.0.0.1:1", "--tls-cert", tlspki / "client.crt",
                "--tls-key", tlspki / "server.key", "--tls-ca", tlspki / "ca.crt")
    assert_one_line_error(r, 2, "does not match")
    r = run_cli("echo", "--to", "A@127.0.0.1:1", "--tls-cert", tlspki / "client.crt",
                "--tls-key", PKI / "recipient-1024.key.pem", "--tls-ca", tlspki / "ca.crt")
    assert_one_line_error(r, 2, "2048")
    # port closed: environment
    r = run_cli("echo", "--to", f"A@127.0.0.1:{free_port()}", *tls_args(tlspki))
    assert_one_line_error(r, 3, "connection")
    # strict server needs RSA + ECDSA
    r = run_cli("receive", "-o", tmp_path / "o", "--port", "0", *tls_args(tlspki, "server"),
                "--tls-profile", "strict")
    assert_one_line_error(r, 2, "RSA and an ECDSA")


def test_strict_profile_ours_to_ours(receiver, tlspki):
    rx = receiver("--tls-cert", tlspki / "server-ec.crt", "--tls-key",
                  tlspki / "server-ec.key", "--tls-profile", "strict")
    r = run_cli("echo", "--to", rx.to(), *tls_args(tlspki), "--tls-profile", "strict",
                "--json", "-")
    assert r.code == 0, r
    doc = json.loads(r.stdout)
    assert doc["tls"]["version"] in ("TLSv1.2", "TLSv1.3")


# -- robustness -----------------------------------------------------------------------------

def test_stalled_client_does_not_block_others(receiver, tlspki):
    rx = receiver("--handshake-timeout", "3")
    stall = socket.create_connection(("127.0.0.1", rx.port))
    try:
        t0 = time.monotonic()
        r = run_cli("echo", "--to", rx.to(), *tls_args(tlspki))
        assert r.code == 0, r
        assert time.monotonic() - t0 < 2.9          # not behind the stalled handshake
    finally:
        stall.close()
    plain = socket.create_connection(("127.0.0.1", rx.port))
    plain.sendall(b"\x01\x00\x00\x00\x00\x10" + b"\0" * 16)   # plaintext DICOM on TLS port
    plain.close()
    code, err, doc = rx.stop()
    assert code == 0


def _threaded_sends(port, pki, folders, state_dir=None):
    """``mediasec.send`` (the Python API) from one thread per folder, at once."""
    import mediasec
    from mediasec.net.tls import read_identity
    from mediasec.io.keys import read_certificates
    tls = mediasec.TLSConfig(identities=(read_identity(str(pki / "client.crt"),
                                                       str(pki / "client.key")),),
                             ca=tuple(read_certificates(str(pki / "ca.crt"))))
    results: dict = {}

    def one(i, folder):
        request = mediasec.SendRequest(
            [str(folder)], f"MEDIASEC@127.0.0.1:{port}", tls, calling_aet=f"LOAD{i}",
            state=str(state_dir / f"s{i}.jsonl") if state_dir else None)
        try:
            results[i] = mediasec.send(request).to_dict()
        except Exception as exc:   # noqa: BLE001 - a killed receiver
            results[i] = exc
    threads = [threading.Thread(target=one, args=(i, f)) for i, f in enumerate(folders)]
    for t in threads:
        t.start()
    return threads, results


def _load_folders(root, n_assoc=20, per=50):
    folders = []
    for i in range(n_assoc):
        f = root / f"in{i:02d}"
        g.ct_series(f, per, patient=f"L{i}", study=f"LS{i}", series=f"LSE{i}", rows=4, cols=4)
        folders.append(f)
    return folders


def test_load_20_associations_then_kill9(receiver, tlspki, tmp_path):
    folders = _load_folders(tmp_path)
    sources = {str(pydicom.dcmread(p, stop_before_pixels=True).SOPInstanceUID): p
               for f in folders for p in f.iterdir()}
    assert len(sources) == 1000
    rx = receiver("--max-associations", "32")
    t0 = time.monotonic()
    threads, results = _threaded_sends(rx.port, tlspki, folders)
    for t in threads:
        t.join(300)
    print(f"1000 instances over 20 associations: {time.monotonic() - t0:.1f} s")
    assert all(isinstance(r, dict) and r["counts"]["sent"] == 50 for r in results.values()), \
        [r if not isinstance(r, dict) else r["counts"] for r in results.values()]
    code, err, doc = rx.stop()
    assert code == 0 and doc["counts"]["stored"] == 1000
    stored = list(rx.out.iterdir())
    assert len(stored) == 1000
    for p in stored:
        assert dataset_bytes(p) == dataset_bytes(sources[p.name[:-4]])

    # second run: kill -9 the receiver in the middle; resume with the state files
    rx2 = receiver(out=tmp_path / "rx-kill")
    state = tmp_path / "state"
    state.mkdir()
    threads, results = _threaded_sends(rx2.port, tlspki, folders, state)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and len(list(rx2.out.iterdir())) < 300:
        time.sleep(0.02)
    rx2.proc.send_signal(signal.SIGKILL)
    rx2.proc.wait()
    for t in threads:
        t.join(120)
    acked = {r["sop_instance_uid"] for res in results.values() if isinstance(res, dict)
             for r in res["instances"] if r["status"] == "sent"}
    confirmed = {json.loads(line)["sop_instance_uid"] for f in state.iterdir()
                 for line in f.read_text().splitlines() if line.strip()}
    assert acked <= confirmed and 0 < len(confirmed) < 1000
    on_disk = {p.name: p for p in rx2.out.iterdir()}
    assert all(n.endswith(".dcm") and not n.startswith(".") for n in on_disk), \
        "a partial file was left"
    for uid in confirmed:
        assert dataset_bytes(on_disk[f"{uid}.dcm"]) == dataset_bytes(sources[uid])
    for p in on_disk.values():   # whatever is there is complete
        assert dataset_bytes(p) == dataset_bytes(sources[p.name[:-4]])
    # resume (four of the twenty senders, to keep the test short): only what was not
    # confirmed goes out
    rx3 = receiver("--port", rx2.port, out=tmp_path / "rx-kill")   # the same peer again
    threads, results = _threaded_sends(rx3.port, tlspki, folders[:4], state)
    for t in threads:
        t.join(300)
    mine = {str(pydicom.dcmread(p, stop_before_pixels=True).SOPInstanceUID)
            for f in folders[:4] for p in f.iterdir()}
    again = sum(r["counts"]["already-sent"] for r in results.values())
    sent = sum(r["counts"]["sent"] for r in results.values())
    assert again == len(mine & confirmed) and sent == 200 - len(mine & confirmed)
    code, err, doc = rx3.stop()
    assert mine <= {p.name[:-4] for p in rx3.out.iterdir()}


def test_sigterm_drains_and_reports(receiver, tlspki, tmp_path):
    rx = receiver()
    res, doc = send_json(rx.to(), DICOM / "ct1.dcm", pki=tlspki)
    assert res.code == 0
    code, err, rdoc = rx.stop()
    assert code == 0 and rdoc["schema"] == "mediasec.receive/1"
    assert rdoc["counts"]["stored"] == 1 and rdoc["instances"][0]["status"] == "stored"
    assert "PatientID" not in json.dumps(rdoc)


# -- receive into a File-set; bounded memory; the API in threads ----------------------------

def _fileset_records(dicomdir) -> dict:
    """SOP Instance UID -> File ID, as pydicom's FileSet (a second DICOMDIR reader) sees it."""
    from pydicom.fileset import FileSet
    fs = FileSet(pydicom.dcmread(dicomdir))
    return {str(i.SOPInstanceUID): tuple(pathlib.PurePath(i.path).relative_to(fs.path).parts)
            for i in fs}


@pytest.mark.peer("dciodvfy")
def test_receive_into_a_fileset_writes_its_dicomdir_at_the_end(receiver, tlspki, tmp_path):
    rx = receiver("--fileset")
    srcs = [DICOM / n for n in PLAIN]
    res, doc = send_json(rx.to(), *srcs, pki=tlspki)
    assert res.code == 0, res
    (rx.out / "notes.txt").write_text("not part of the File-set")
    assert not (rx.out / "DICOMDIR").exists()          # written when the receiver stops
    code, err, rdoc = rx.stop()
    assert code == 0, err
    records = _fileset_records(rx.out / "DICOMDIR")
    want = by_uid(srcs)
    assert set(records) == set(want)
    for uid, fid in records.items():
        assert len(fid) == 3 and all(re.fullmatch(r"[A-Z2-7]{8}", c) for c in fid), fid
        # bit for bit: the data set exactly as sent, under its File ID
        assert dataset_bytes(rx.out.joinpath(*fid)) == dataset_bytes(want[uid])
    fs = rdoc["fileset"]
    assert fs["dicomdir"] == "DICOMDIR" and fs["instances"] == len(srcs)
    assert {s["path"]: s["code"] for s in fs["skipped"]} == {"notes.txt": "FILESET_NOT_FILE_ID"}
    # our own checker and an independent one accept it
    assert run_cli("verify", str(rx.out)).code == 0
    proc = subprocess.run([peer("dciodvfy"), str(rx.out / "DICOMDIR")], capture_output=True,
                          text=True)
    assert [ln for ln in proc.stderr.splitlines() if ln.startswith("Error")] == []
    # a second run into the same File-set: one File-set UID, every instance listed
    uid_before = pydicom.dcmread(rx.out / "DICOMDIR").file_meta.MediaStorageSOPInstanceUID
    rx2 = receiver("--fileset", out=rx.out)
    extra = g.write_instance(tmp_path / "more.dcm", "ct", patient="P9", study="S9")
    assert send_json(rx2.to(), extra, pki=tlspki)[0].code == 0
    assert send_json(rx2.to(), srcs[0], pki=tlspki)[0].code == 0    # again: a duplicate
    # the same UID with other content (a corrected re-send): kept, not in the DICOMDIR
    fixed = pydicom.dcmread(srcs[1])
    fixed.StudyDescription = "CORRECTED"
    fixed.save_as(tmp_path / "fixed.dcm", enforce_file_format=True)
    assert send_json(rx2.to(), tmp_path / "fixed.dcm", pki=tlspki)[0].code == 0
    code, err, rdoc2 = rx2.stop()
    assert code == 0 and rdoc2["counts"]["duplicates"] == 1
    assert set(_fileset_records(rx.out / "DICOMDIR")) == set(want) | {
        str(pydicom.dcmread(extra).SOPInstanceUID)}
    assert _fileset_records(rx.out / "DICOMDIR")[str(fixed.SOPInstanceUID)] == \
        records[str(fixed.SOPInstanceUID)]                  # the first one stays listed
    conflict = [s for s in rdoc2["fileset"]["skipped"] if s["code"] == "FILESET_DUPLICATE_UID"]
    assert len(conflict) == 1 and rx.out.joinpath(conflict[0]["path"]).is_file()
    ds = pydicom.dcmread(rx.out / "DICOMDIR")
    assert ds.file_meta.MediaStorageSOPInstanceUID == uid_before
    # the DICOMDIR cannot be written: one line, exit 2, the summary still written, and
    # every instance kept
    (rx.out / "DICOMDIR").unlink()
    (rx.out / "DICOMDIR").mkdir()
    rx3 = receiver("--fileset", out=rx.out)
    code, err, rdoc3 = rx3.stop()
    assert code == 2 and len(err.strip().splitlines()) == 1 and "DICOMDIR" in err, err
    assert rdoc3["fileset"]["error"]["code"] == "USAGE_OUTPUT_IS_DIR"
    assert all(rx.out.joinpath(*fid).is_file() for fid in records.values())


def _rss_peak_kib(pid: int) -> int:
    for line in pathlib.Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise AssertionError("no VmHWM")


def _spool_fds(pid: int) -> list[str]:
    """The receiver's open anonymous files (O_TMPFILE shows as ``/dir/#inode (deleted)``)."""
    out = []
    for fd in pathlib.Path(f"/proc/{pid}/fd").iterdir():
        with __import__("contextlib").suppress(OSError):
            target = os.readlink(fd)
            if "/#" in target:
                out.append(target)
    return out


def test_large_instance_received_in_bounded_memory_and_a_cut_leaves_nothing(
        receiver, tlspki, tmp_path):
    """A 32 MiB instance never sits in the receiver's memory: it is spooled to an anonymous
    file in the output folder fragment by fragment. A sender killed in the middle of one
    leaves no file behind, and the receiver keeps serving."""
    big = g.write_instance(tmp_path / "big.dcm", "ct", rows=4100, cols=4100, patient="BIG")
    assert big.stat().st_size > 32 << 20
    rx = receiver()
    time.sleep(0.3)
    before = _rss_peak_kib(rx.proc.pid)
    res, doc = send_json(rx.to(), big, pki=tlspki)
    assert res.code == 0, res
    grew = _rss_peak_kib(rx.proc.pid) - before
    print(f"receiver peak RSS grew by {grew} KiB for a {big.stat().st_size >> 20} MiB instance")
    assert grew < 16 << 10, f"the receiver's peak RSS grew by {grew} KiB"
    stored = rx.out / f"{pydicom.dcmread(big, stop_before_pixels=True).SOPInstanceUID}.dcm"
    assert dataset_bytes(stored) == dataset_bytes(big)
    stored.unlink()
    # cut a second transfer short: kill -9 the sender once the receiver is spooling
    sender = subprocess.Popen([sys.executable, "-m", "mediasec", "send", str(big), "--to",
                               rx.to(), *map(str, tls_args(tlspki))],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while not _spool_fds(rx.proc.pid) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert _spool_fds(rx.proc.pid), "the transfer never started"
    sender.kill()
    sender.wait()
    deadline = time.monotonic() + 30
    while _spool_fds(rx.proc.pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _spool_fds(rx.proc.pid) == []                # the half instance is freed
    assert list(rx.out.iterdir()) == []                  # and never had a name
    assert run_cli("echo", "--to", rx.to(), *tls_args(tlspki)).code == 0
    code, err, rdoc = rx.stop()
    assert code == 0 and rdoc["counts"]["stored"] == 1


def test_api_two_receivers_in_one_process_and_sends_in_threads(tlspki, tmp_path):
    """``mediasec.receive``/``send``/``echo`` in one process: two receivers (one a
    File-set) share nothing, each association's handlers run in their own threads."""
    import mediasec
    from mediasec.io.keys import read_certificates
    from mediasec.net.tls import read_identity

    def tls(who):
        return mediasec.TLSConfig(
            identities=(read_identity(str(tlspki / f"{who}.crt"), str(tlspki / f"{who}.key")),),
            ca=tuple(read_certificates(str(tlspki / "ca.crt"))))
    events: list = []
    folders = _load_folders(tmp_path / "in", n_assoc=4, per=5)
    with mediasec.receive(mediasec.ReceiveRequest(str(tmp_path / "a"), tls("server"),
                                                  bind="127.0.0.1", port=0),
                          on_event=events.append) as rx_a, \
            mediasec.receive(mediasec.ReceiveRequest(str(tmp_path / "b"), tls("server"),
                                                     fileset=True, bind="127.0.0.1",
                                                     port=0)) as rx_b:
        ok = mediasec.echo(mediasec.EchoRequest(f"MEDIASEC@127.0.0.1:{rx_a.port}",
                                                tls("client")))
        assert ok.status == 0 and ok.tls["version"] in ("TLSv1.2", "TLSv1.3")
        results: dict = {}

        def one(i, folder):
            port = (rx_a if i % 2 else rx_b).port
            results[i] = mediasec.send(mediasec.SendRequest(
                [str(folder)], f"MEDIASEC@127.0.0.1:{port}", tls("client"),
                calling_aet=f"T{i}"))
        threads = [threading.Thread(target=one, args=(i, f)) for i, f in enumerate(folders)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        assert [results[i].counts["sent"] for i in range(4)] == [5, 5, 5, 5]
        assert not any(r.failed for r in results.values())
    a, b = rx_a.stop(), rx_b.stop()
    assert a.counts["stored"] == 10 and b.counts["stored"] == 10
    assert "fileset" not in a.to_dict() and b.to_dict()["fileset"]["instances"] == 10
    assert len(list((tmp_path / "a").iterdir())) == 10 and (tmp_path / "b/DICOMDIR").exists()
    assert {e["calling_aet"] for e in events if e["event"] == "association"} >= {"T1", "T3"}


def test_a_plain_file_written_to_while_sent_is_reported_not_confirmed(tlspki, tmp_path,
                                                                     monkeypatch):
    """Plain files on this machine go out from where they are (no copy); one written to
    between its check and its C-STORE is reported failed (SEND_SOURCE_CHANGED) and is not
    recorded as confirmed, so a re-run sends it again."""
    import mediasec
    from pynetdicom.association import Association

    from mediasec.io.keys import read_certificates
    from mediasec.net.tls import read_identity

    def tls(who):
        return mediasec.TLSConfig(
            identities=(read_identity(str(tlspki / f"{who}.crt"), str(tlspki / f"{who}.key")),),
            ca=tuple(read_certificates(str(tlspki / "ca.crt"))))
    src = g.ct_series(tmp_path / "in", 2, patient="CHG")
    original = Association.send_c_store

    def tamper(self, dataset, *a, **kw):
        if os.readlink(str(dataset)) == str(src[1]):
            with open(src[1], "ab") as f:
                f.write(b"\0\0")            # a writer appends while we send
        return original(self, dataset, *a, **kw)
    monkeypatch.setattr(Association, "send_c_store", tamper)
    state = tmp_path / "state.jsonl"
    with mediasec.receive(mediasec.ReceiveRequest(str(tmp_path / "rx"), tls("server"),
                                                  bind="127.0.0.1", port=0)) as rx:
        result = mediasec.send(mediasec.SendRequest(
            [str(p) for p in src], f"MEDIASEC@127.0.0.1:{rx.port}", tls("client"),
            state=str(state)))
    by_path = {pathlib.Path(r["path"]).name: r for r in result.instances}
    assert by_path[src[0].name]["status"] == "sent"
    bad = by_path[src[1].name]
    assert bad["status"] == "failed" and bad["reasons"][-1]["code"] == "SEND_SOURCE_CHANGED"
    assert result.failed
    confirmed = [json.loads(line)["sop_instance_uid"] for line in state.read_text().splitlines()]
    assert confirmed == [by_path[src[0].name]["sop_instance_uid"]]


# -- dataset signatures on receive (Secure Use) ---------------------------------------------

@pytest.mark.peer("dcmsign")
def test_receive_check_signatures_stores_valid_and_refuses_broken(receiver, tlspki, tmp_path):
    """`receive --check-signatures`: an object signed by dcmsign and one signed by us are
    stored; one whose signed pixel data changed in transit is refused (and quarantined),
    the sender told so; an unsigned object passes (nothing to check)."""
    from conftest import run_peer
    src = tmp_path / "src"
    a, b, c, d = g.ct_series(src, 4)
    run_peer(["dcmsign", "+s", str(PKI / "signer.key.pem"), str(PKI / "signer.pem"), "-pw",
              "+m2", str(a), str(tmp_path / "a.dcm")])
    os.replace(tmp_path / "a.dcm", a)
    for p in (b, c):
        assert run_cli("sign", p, "--key", PKI / "signer.key.pem", "--cert",
                       PKI / "signer.pem", "--in-place").code == 0
    data = bytearray(c.read_bytes())
    at = data.rindex(b"\xe0\x7f\x10\x00") + 12    # a pixel byte, covered by the signature
    data[at] ^= 0x01
    c.write_bytes(bytes(data))
    quarantine = tmp_path / "q"
    rx = receiver("--check-signatures", "--signature-trust", PKI / "trust.pem",
                  "--signature-trust", PKI / "chain.pem", "--quarantine", quarantine)
    res, doc = send_json(rx.to(), src, "--include-invalid", pki=tlspki)
    assert res.code == 1, res                           # one instance refused by the peer
    code, err, rdoc = rx.stop()
    assert code == 0, err
    assert rdoc["counts"]["stored"] == 3 and rdoc["counts"]["refused"] == 1
    refused = [e for e in rdoc["events"] if e.get("event") == "refused"]
    uid_c = str(pydicom.dcmread(c, stop_before_pixels=True).SOPInstanceUID)
    assert [e["sop_instance_uid"] for e in refused] == [uid_c]
    assert refused[0]["code"].startswith("SIG_")
    got = by_uid(rx.out.iterdir())
    assert set(got) == {str(pydicom.dcmread(p, stop_before_pixels=True).SOPInstanceUID)
                        for p in (a, b, d)}
    assert len(list(quarantine.iterdir())) == 1
