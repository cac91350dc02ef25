#!/usr/bin/env bash
# Install mediasec (into .venv/ in the checkout) and run the main job on the bundled demo
# data: build a secure patient-CD image (every file, the DICOMDIR included, signed and AES-256 encrypted for the demo
# recipient), then verify it as a receiving site would.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/_venv.sh  # .venv/ in the checkout (PEP 668: never the system python)
"$PY" -m pip install -q --disable-pip-version-check .
mediasec() { "$venv/bin/mediasec" "$@"; }
out=$(mktemp -d "${TMPDIR:-/tmp}/mediasec-demo.XXXXXX")
pki=fixtures/pki
d=fixtures/dicom
# the CD profile takes Explicit VR LE (implicit VR and deflate are converted on the way);
# the RLE and JPEG fixtures need a DVD/USB profile, so they stay out of the CD
mediasec build $d/ct1.dcm $d/ct2.dcm $d/ct3_ile.dcm $d/mr1.dcm $d/mr2_deflate.dcm \
  $d/sr1.dcm $d/pr1.dcm $d/pdf1.dcm $d/us_mf.dcm \
  -o "$out/patient-cd.iso" --profile STD-GEN-SEC-CD --fileset-id DEMO_CD --pdi \
  --encrypt-to $pki/recipient-2048.pem \
  --sign-key $pki/signer.key.pem --sign-cert $pki/signer.pem --sign-chain $pki/chain.pem \
  --json "$out/build.json"
mediasec verify "$out/patient-cd.iso" --key $pki/recipient-2048.key.pem \
  --cert $pki/recipient-2048.pem --trust $pki/trust.pem --json "$out/verify.json"
echo "demo: secure patient CD $out/patient-cd.iso built and verified (reports in $out)"
