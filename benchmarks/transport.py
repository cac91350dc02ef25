"""DICOM over TLS on loopback: our ``send`` -> storescp and storescu -> our ``receive``, each
against storescu -> storescp (DCMTK with TLS, bit-preserving) in the same run.

    python benchmarks/transport.py [--size MIB] [--instance-kib KIB] [--pdu BYTES]

Generates ``--size`` MiB (default 1024) of CT instances of about ``--instance-kib`` KiB each
(default 2048) under benchmarks/_work/transport, a throw-away TLS PKI, and prints wall times,
MiB/s and the ratios (goal >= 1.0x: ours at least as fast as DCMTK on both sides).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import pathlib
import resource
import shutil
import signal
import socket
import subprocess
import sys
import time

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "tests"))

from _corpus import make_corpus  # noqa: E402
from _tlspki import make_tls_pki  # noqa: E402


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port: int) -> None:
    for _ in range(400):
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.025)
    raise SystemExit(f"nothing listens on {port}")


PDU: list[str] = []      # ["-pdu", N] for the DCMTK tools when --pdu is given
DCMTK_ENV: dict = {}     # {"TCP_NODELAY": "1"} with --dcmtk-nodelay


def storescp(pki, out, port):
    out.mkdir(parents=True)
    p = subprocess.Popen(["storescp", *PDU, "-aet", "STORESCP", "-od", str(out), "+B", "+xa",
                          "+tls", str(pki / "server.key"), str(pki / "server.crt"), "-pw",
                          "+cf", str(pki / "ca.crt"), str(port)],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                         env={**os.environ, **DCMTK_ENV})
    wait_port(port)
    return p


def storescu(pki, corpus, port, aec):
    return ["storescu", *PDU, "-aet", "DCMTK", "-aec", aec, "+tls", str(pki / "client.key"),
            str(pki / "client.crt"), "-pw", "+cf", str(pki / "ca.crt"), "+sd", "+r",
            "127.0.0.1", str(port), str(corpus)]


def ours_receive(pki, out):
    p = subprocess.Popen([sys.executable, "-m", "mediasec", "receive", "-o", str(out),
                          "--port", "0", "--bind", "127.0.0.1",
                          "--tls-cert", str(pki / "server.crt"), "--tls-key",
                          str(pki / "server.key"), "--tls-ca", str(pki / "ca.crt")],
                         stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    port = json.loads(p.stdout.readline())["port"]
    return p, port


def count(folder: pathlib.Path) -> int:
    return sum(1 for p in folder.rglob("*") if p.is_file())


def cpu_children() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def peak_rss_mib(pid: int) -> float:
    for line in pathlib.Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def timed(cmd) -> float:
    t0 = time.perf_counter()
    r = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                       env={**os.environ, **(DCMTK_ENV if cmd[0] == "storescu" else {})})
    dt = time.perf_counter() - t0
    if r.returncode != 0:
        raise SystemExit(f"{cmd[0]} {cmd[1:3]} exited {r.returncode}: {r.stderr[-500:]}")
    return dt


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=1024, help="MiB of instances (default 1024)")
    ap.add_argument("--instance-kib", type=int, default=2048)
    ap.add_argument("--pdu", type=int, default=None, help="maximum PDU for storescp/storescu "
                    "(4096..131072; default: DCMTK's 16384)")
    ap.add_argument("--dcmtk-nodelay", action="store_true", help="run the DCMTK tools with "
                    "TCP_NODELAY=1 (DCMTK 3.6.7 leaves Nagle's algorithm on by default, which "
                    "stalls each C-STORE response on the peer's delayed ACK)")
    a = ap.parse_args()
    if a.pdu:
        PDU[:] = ["-pdu", str(a.pdu)]
    if a.dcmtk_nodelay:
        DCMTK_ENV["TCP_NODELAY"] = "1"
    for tool in ("storescp", "storescu"):
        if shutil.which(tool) is None:
            raise SystemExit(f"{tool} (DCMTK) is needed")
    work = HERE / "_work" / "transport"
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    pki = make_tls_pki(work / "pki")
    side = int(math.sqrt(a.instance_kib * 1024 / 2))
    n = max(1, (a.size << 20) // (side * side * 2))
    total = make_corpus(work / "corpus", n, rows=side, cols=side)
    mib = total / (1 << 20)
    print(f"corpus: {n} CT instances of {side}x{side}x16 bits, {mib:.1f} MiB; TLS loopback; "
          f"DCMTK max PDU {a.pdu or 16384}; DCMTK Nagle "
          f"{'off (TCP_NODELAY=1)' if a.dcmtk_nodelay else 'on (its default)'}")

    rows = []
    # baseline: storescu -> storescp
    port = free_port()
    scp = storescp(pki, work / "rx-dcmtk", port)
    c0 = cpu_children()
    try:
        base = timed(storescu(pki, work / "corpus", port, "STORESCP"))
    finally:
        scp.send_signal(signal.SIGTERM)
        scp.wait()
    assert count(work / "rx-dcmtk") == n
    rows.append(("storescu -> storescp", base, cpu_children() - c0, ""))
    # ours -> storescp
    port = free_port()
    scp = storescp(pki, work / "rx-ours-send", port)
    c0 = cpu_children()
    try:
        send = timed([sys.executable, "-m", "mediasec", "send", str(work / "corpus"), "--to",
                      f"STORESCP@127.0.0.1:{port}", "--tls-cert", str(pki / "client.crt"),
                      "--tls-key", str(pki / "client.key"), "--tls-ca", str(pki / "ca.crt")])
    finally:
        scp.send_signal(signal.SIGTERM)
        scp.wait()
    assert count(work / "rx-ours-send") == n
    rows.append(("mediasec send -> storescp", send, cpu_children() - c0, ""))
    # storescu -> ours
    (work / "rx-ours").mkdir()
    c0 = cpu_children()
    rx, port = ours_receive(pki, work / "rx-ours")
    try:
        recv = timed(storescu(pki, work / "corpus", port, "MEDIASEC"))
        rss = peak_rss_mib(rx.pid)
    finally:
        rx.send_signal(signal.SIGTERM)
        rx.wait()
    assert count(work / "rx-ours") == n
    rows.append(("storescu -> mediasec receive", recv, cpu_children() - c0,
                 f"receiver peak RSS {rss:.0f} MiB"))

    print(f"{'path':32} {'seconds':>8} {'MiB/s':>8} {'CPU s (both ends)':>18}")
    for name, secs, cpu, note in rows:
        print(f"{name:32} {secs:8.2f} {mib / secs:8.1f} {cpu:18.2f}  {note}")
    print(f"send ratio    (storescu->storescp time / mediasec send time):    {base / send:.2f}x")
    print(f"receive ratio (storescu->storescp time / storescu->mediasec time): "
          f"{base / recv:.2f}x")
    shutil.rmtree(work)


if __name__ == "__main__":
    main()
