#!/usr/bin/env bash
# Install mediasec and run the main job on the bundled demo data.
# Today: every sample DICOM file becomes a signed + AES-256 enveloped Secure DICOM File,
# is inspected, then opened again with signature and chain checks.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m pip install -q --disable-pip-version-check .
out=$(mktemp -d "${TMPDIR:-/tmp}/mediasec-demo.XXXXXX")
pki=fixtures/pki
n=0
for f in fixtures/dicom/*.dcm; do
  name=$(basename "$f" .dcm)
  mediasec protect "$f" -o "$out/$name.sec" --encrypt-to $pki/recipient-2048.pem \
    --sign-key $pki/signer.key.pem --sign-cert $pki/signer.pem --sign-chain $pki/chain.pem
  mediasec unprotect "$out/$name.sec" -o "$out/$name.dcm" --key $pki/recipient-2048.key.pem \
    --cert $pki/recipient-2048.pem --trust $pki/trust.pem
  cmp -s "$f" "$out/$name.dcm"
  n=$((n + 1))
done
mediasec inspect "$out/ct1.sec"
echo "demo: $n files protected, verified (signature trusted) and restored byte for byte in $out"
