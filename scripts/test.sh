#!/usr/bin/env bash
# Install what the tests need (Debian peer tools; Python packages into .venv/ in the
# checkout) and run the test suite.
# Peers are installed with apt-get when running as root; otherwise the peer tests skip
# (or fail, when MEDIASEC_REQUIRE_PEERS=1, as in CI).
set -euo pipefail
cd "$(dirname "$0")/.."

peers=(openssl dcmdump dcmmkdir dcmgpdir dcmsign storescp dciodvfy gdcmanon gdcmgendir xorriso isoinfo genisoimage 7z udfinfo)
missing=()
for t in "${peers[@]}"; do command -v "$t" >/dev/null 2>&1 || missing+=("$t"); done
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "installing peer tools (missing: ${missing[*]})"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends openssl dcmtk dicom3tools libgdcm-tools \
      xorriso genisoimage p7zip-full udftools >/dev/null
  else
    echo "warning: peer tools missing (${missing[*]}) and not root: their tests will skip" >&2
  fi
fi

. scripts/_venv.sh  # .venv/ in the checkout (PEP 668: never the system python)
"$PY" -m pip install -q --disable-pip-version-check -e '.[test]'
exec "$PY" -m pytest -q "$@"
