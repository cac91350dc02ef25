"""The Python API (``import mediasec``): the same engine as the command line, one job per
call, safe when jobs run in threads of one process.

Time and randomness are pinned the way a reproducible build needs: the job clock
(``mediasec.media.jobs.utc_now``: the PDI date), the wall clock pycdlib stamps into the
image (``time.time``) and ``secrets.token_bytes`` (content keys, IVs, the password
recipient's salt, IV and padding) yield the same values in both runs. Only password
recipients are used where bytes are compared: RSA key transport draws its padding inside
OpenSSL, which nothing can pin.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import itertools
import secrets
import threading
import time

import pytest

import mediasec
from mediasec.media import jobs
from conftest import DICOM, PKI, assert_one_line_error, run_cli

PILE = [DICOM / n for n in ("ct1.dcm", "ct2.dcm", "ct3_ile.dcm", "mr1.dcm",
                            "mr2_deflate.dcm", "sr1.dcm", "pr1.dcm")]
T0 = _dt.datetime(2026, 6, 1, 12, 0, tzinfo=_dt.timezone.utc)
UID = "2.25.424242"


def _stream(seed: str):
    """A deterministic ``token_bytes``: SHA-256 in counter mode."""
    counter = itertools.count()
    lock = threading.Lock()

    def token_bytes(n=None):
        n = 32 if n is None else n
        out = b""
        with lock:
            while len(out) < n:
                out += hashlib.sha256(f"{seed}:{next(counter)}".encode()).digest()
        return out[:n]
    return token_bytes


@pytest.fixture
def pin(monkeypatch):
    """``pin(seed)`` restarts the pinned randomness; the clocks stay fixed."""
    monkeypatch.setattr(jobs, "utc_now", lambda: T0)
    monkeypatch.setattr(time, "time", lambda: T0.timestamp())

    def restart(seed: str = "s") -> None:
        monkeypatch.setattr(secrets, "token_bytes", _stream(seed))
    restart()
    return restart


def _password(pw: bytes = b"api secret") -> mediasec.PasswordRecipient:
    return mediasec.PasswordRecipient(pw, iterations=100_000)


def _verify_clean(path, pw: bytes = b"api secret") -> mediasec.verify:
    report = mediasec.verify(mediasec.VerifyRequest(
        str(path), decrypters=[mediasec.PasswordDecrypter(pw)], workers=1))
    assert not report.failed, report.to_dict()["findings"]
    assert report.counts()["failed"] == 0
    return report


# -- the CLI and the API make the same thing ----------------------------------------------

@pytest.mark.parametrize("secure", [False, True], ids=["plain", "secure"])
def test_api_and_cli_make_the_same_image(tmp_path, pin, secure):
    flags = ["--pdi", "--fileset-uid", UID, "--workers", "2"]
    if secure:
        flags += ["--password-env", "PW", "--pbkdf2-iterations", "100000"]
    pin()
    res = run_cli("build", *PILE, "-o", tmp_path / "cli.iso", *flags, env={"PW": "api secret"})
    assert res.code == 0, res
    pin()
    events = []
    result = mediasec.build(mediasec.BuildRequest(   # paths as pathlib.Path work too
        PILE, tmp_path / "api.iso", pdi=True, fileset_uid=UID,
        workers=2, recipients=[_password()] if secure else []), on_progress=events.append)
    cli_bytes = (tmp_path / "cli.iso").read_bytes()
    assert (tmp_path / "api.iso").read_bytes() == cli_bytes
    # the result is the mediasec.build/1 document
    doc = result.to_dict()
    assert doc["schema"] == "mediasec.build/1" and doc["outcome"] == "passed"
    assert result.images == (str(tmp_path / "api.iso"),) and result.secure is secure
    assert doc["images"][0]["size"] == len(cli_bytes) and doc["counts"]["instances"] == len(PILE)
    # progress: every scanned file, then bytes up to the total
    assert sum(e["event"] == "scan" for e in events) == len(PILE)
    done = [e for e in events if e["event"] == "progress"]
    files = doc["images"][0]["files"]
    manifest = sum(64 + 2 + len(f["path"]) + 1 for f in files)   # sha256sum lines
    assert done[-1]["done_bytes"] == done[-1]["total_bytes"] == sum(
        f["size"] for f in files) + manifest
    if secure:
        _verify_clean(tmp_path / "api.iso")


def test_api_errors_are_the_error_tree(tmp_path):
    (tmp_path / "taken.iso").write_bytes(b"")
    with pytest.raises(mediasec.errors.UsageError) as e:
        mediasec.build(mediasec.BuildRequest([str(PILE[0])], str(tmp_path / "taken.iso")))
    assert e.value.code == "USAGE_OUTPUT_EXISTS"
    with pytest.raises(mediasec.errors.UsageError) as e:
        mediasec.build(mediasec.BuildRequest([str(PILE[0])], str(tmp_path / "x.iso"),
                                             profile="STD-GEN-SEC-CD"))
    assert e.value.code == "USAGE_SECURE_NEEDS_RECIPIENT"
    with pytest.raises(mediasec.errors.InputError) as e:
        mediasec.build(mediasec.BuildRequest([str(PKI / "trust.pem")], str(tmp_path / "y")))
    assert e.value.code == "INPUT_NO_DICOM"
    with pytest.raises(mediasec.errors.UsageError) as e:   # one path, not a list of them
        mediasec.build(mediasec.BuildRequest(str(DICOM), str(tmp_path / "z.iso")))
    assert e.value.code == "USAGE_BAD_INPUT"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["taken.iso"]
    # the CLI maps the same exception to its exit code and one line
    assert_one_line_error(run_cli("build", PILE[0], "-o", tmp_path / "taken.iso"), 2,
                          "output already exists")


# -- jobs in threads -----------------------------------------------------------------------

def _in_threads(*calls):
    """Run the calls at once, each in its own thread; return results (or raise the first
    exception)."""
    results, errors = [None] * len(calls), []
    start = threading.Barrier(len(calls))

    def run(i, fn):
        try:
            start.wait()
            results[i] = fn()
        except BaseException as exc:  # noqa: BLE001 - handed to the test thread
            errors.append(exc)
    threads = [threading.Thread(target=run, args=(i, fn)) for i, fn in enumerate(calls)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    if errors:
        raise errors[0]
    return results


def test_two_builds_in_threads_match_sequential_builds(tmp_path, pin):
    """Two plain builds at once (each with its worker processes) make exactly the images
    the same requests make one after the other; with another pile and File-set UID each,
    so a mix-up of state between the jobs would show."""
    piles = [PILE[:4], PILE[3:]]

    def request(i: int, name: str) -> mediasec.BuildRequest:
        return mediasec.BuildRequest([str(p) for p in piles[i]], str(tmp_path / name),
                                     fileset_uid=f"{UID}.{i}", pdi=True, workers=2)
    for i in range(2):
        mediasec.build(request(i, f"seq{i}.iso"))
    _in_threads(lambda: mediasec.build(request(0, "par0.iso")),
                lambda: mediasec.build(request(1, "par1.iso")))
    for i in range(2):
        assert (tmp_path / f"par{i}.iso").read_bytes() == (tmp_path / f"seq{i}.iso").read_bytes()
    assert (tmp_path / "par0.iso").read_bytes() != (tmp_path / "par1.iso").read_bytes()


def test_two_secure_builds_in_threads_each_verify_clean(tmp_path):
    """Two secure builds at once, each for its own password and signer chain cache: each
    image verifies clean with its own password and not at all with the other's."""
    signer = mediasec.RSASigner(
        mediasec.load_private_key((PKI / "signer.key.pem").read_bytes())[0],
        mediasec.load_certificates((PKI / "signer.pem").read_bytes())[0],
        mediasec.load_certificates((PKI / "chain.pem").read_bytes()))
    pws = [b"first secret", b"second secret"]
    _in_threads(*[
        (lambda i=i: mediasec.build(mediasec.BuildRequest(
            [str(p) for p in PILE], str(tmp_path / f"s{i}.iso"), workers=2,
            recipients=[_password(pws[i])], signers=[signer] if i else [])))
        for i in range(2)])
    trust = mediasec.TrustContext(
        anchors=tuple(mediasec.load_certificates((PKI / "trust.pem").read_bytes())))
    for i in range(2):
        report = mediasec.verify(mediasec.VerifyRequest(
            str(tmp_path / f"s{i}.iso"), decrypters=[mediasec.PasswordDecrypter(pws[i])],
            trust=trust))
        assert not report.failed and report.counts()["passed"] == len(PILE) + 2  # + DICOMDIR, manifest
        with pytest.raises(mediasec.errors.InputError) as e:
            mediasec.verify(mediasec.VerifyRequest(
                str(tmp_path / f"s{i}.iso"),
                decrypters=[mediasec.PasswordDecrypter(pws[1 - i])]))
        assert e.value.code == "CMS_WRONG_PASSWORD"


def test_a_build_and_a_verify_in_threads(tmp_path):
    """A verify of one image while another is being built: both right."""
    mediasec.build(mediasec.BuildRequest([str(p) for p in PILE], str(tmp_path / "a.iso"),
                                         recipients=[_password()], workers=2))
    expected = _verify_clean(tmp_path / "a.iso").to_dict()
    events = []
    extracted = mediasec.extract(mediasec.ExtractRequest(
        str(tmp_path / "a.iso"), str(tmp_path / "x"),
        decrypters=[mediasec.PasswordDecrypter(b"api secret")], workers=1),
        on_progress=events.append)
    assert extracted.written == len(PILE) and extracted.outcome.value == "passed"
    assert events[-1]["done_bytes"] == events[-1]["total_bytes"] > 0
    built, report = _in_threads(
        lambda: mediasec.build(mediasec.BuildRequest(
            [str(p) for p in PILE], str(tmp_path / "b.iso"), recipients=[_password()],
            workers=2)),
        lambda: mediasec.verify(mediasec.VerifyRequest(
            str(tmp_path / "a.iso"), decrypters=[mediasec.PasswordDecrypter(b"api secret")],
            workers=2)))
    assert report.to_dict()["files"] == expected["files"] and not report.failed
    assert built.outcome == "passed"
    _verify_clean(tmp_path / "b.iso")


def test_the_public_names_are_pinned():
    """``mediasec.__all__`` is the API: each name resolves, and a change here is a
    deliberate one."""
    assert mediasec.__all__ == [
        "build", "check_build", "BuildRequest", "BuildResult",
        "verify", "VerifyRequest",
        "extract", "ExtractRequest",
        "list_medium", "ListRequest",
        "protect", "ProtectRequest", "ProtectResult",
        "unprotect", "UnprotectRequest",
        "inspect", "InspectRequest", "InspectResult",
        "deidentify", "DeidentifyRequest", "reidentify", "ReidentifyRequest", "RewriteResult",
        "sign_files", "SignFilesRequest", "SignFilesResult",
        "check_signatures", "CheckSignaturesRequest", "CheckSignaturesResult",
        "echo", "EchoRequest", "EchoResult", "send", "SendRequest", "SendResult",
        "receive", "ReceiveRequest", "ReceiveResult", "Receiver",
        "ProtectOptions", "AlgorithmPolicy", "TrustContext",
        "KeyTransportRecipient", "PasswordRecipient", "RSASigner", "KeyDecrypter",
        "PasswordDecrypter", "load_certificates", "load_private_key", "DeidJob", "SignRequest",
        "TLSConfig", "PatientMapping",
        "errors"]
    for name in mediasec.__all__:
        assert getattr(mediasec, name) is not None
    with pytest.raises(AttributeError):
        mediasec.plan_medium   # noqa: B018 - internals are not part of it


def _state_of(secret):
    return {"secret": secret}


def _peek(state, item):
    return (type(state["secret"]).__name__, item)   # the worker has it (not sent back)


def test_worker_secrets_are_never_pickled():
    """``Pool(setup=...)``: forked workers inherit the setup arguments; where only
    ``spawn`` would be available (pickling them through a pipe) the pool runs in-process."""
    from mediasec.io.workers import Pool

    class Unpicklable:            # a stand-in for a key: pickling it fails loudly
        def __reduce__(self):
            raise AssertionError("a secret was pickled")
    key = Unpicklable()
    with Pool(2, setup=_state_of, args=(key,)) as pool:
        assert pool.workers == 2
        assert list(pool.run(_peek, range(3))) == [("Unpicklable", i) for i in range(3)]
    with Pool(2, setup=_state_of, args=(key,), context="spawn") as pool:
        assert pool.workers == 1
        assert list(pool.run(_peek, [7])) == [("Unpicklable", 7)]
