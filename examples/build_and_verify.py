"""Build a secure CD image from a folder of DICOM files, then verify it: the Python API.

    MEDIASEC_PASSWORD='a long passphrase' python examples/build_and_verify.py SRC_DIR disc.iso

The image is a STD-GEN-SEC-CD File-set: every file, the DICOMDIR included, a Secure DICOM
File for the password (the password comes from the environment, never the command line).
The test suite runs this script (tests/test_examples.py).
"""

from __future__ import annotations

import os
import sys

import mediasec


def main(source: str, image: str) -> int:
    password = os.environ.get("MEDIASEC_PASSWORD", "").encode()
    if not password:
        print("set MEDIASEC_PASSWORD", file=sys.stderr)
        return 2

    def on_progress(event: dict) -> None:
        if event["event"] == "progress" and event["done_bytes"] == event["total_bytes"]:
            print(f"wrote {event['total_bytes']} bytes")

    try:
        result = mediasec.build(
            mediasec.BuildRequest([source], image, pdi=True,
                                  recipients=[mediasec.PasswordRecipient(password)]),
            on_progress=on_progress)
        print(f"{result.images[0]}: {result.counts['instances']} instances, "
              f"profile {result.profile}")

        report = mediasec.verify(mediasec.VerifyRequest(
            image, decrypters=[mediasec.PasswordDecrypter(password)]))
    except mediasec.errors.MediasecError as exc:
        print(f"{exc.path or image}: {exc.message} ({exc.code})", file=sys.stderr)
        return 1 if isinstance(exc, mediasec.errors.VerificationError) else 2
    counts = report.counts()
    print(f"verify: {report.outcome.value}, {counts['passed']} of {counts['files']} files "
          "passed")
    return 1 if report.failed else 0


if __name__ == "__main__":
    if len(sys.argv) != 3:
        print(__doc__.strip().splitlines()[2].strip(), file=sys.stderr)
        sys.exit(2)
    sys.exit(main(sys.argv[1], sys.argv[2]))
