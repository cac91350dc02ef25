# Sourced by demo.sh and test.sh: make (or reuse) the project's virtual environment and set
# PY to its python. Debian's own python refuses `pip install` into the system (PEP 668,
# externally-managed-environment), so mediasec and its dependencies go into .venv/ in the
# checkout (MEDIASEC_VENV overrides the place). As root, the Debian package python3-venv is
# installed when `python3 -m venv` is unavailable; otherwise one line says what to ask for.

venv="${MEDIASEC_VENV:-.venv}"
if ! "$venv/bin/python" -m pip --version >/dev/null 2>&1; then
  if ! python3 -c 'import ensurepip, venv' >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
      echo "installing python3-venv (python3 -m venv is unavailable)"
      export DEBIAN_FRONTEND=noninteractive
      apt-get update -qq
      apt-get install -y -qq --no-install-recommends python3-venv >/dev/null
    else
      echo "mediasec: python3 -m venv is unavailable: ask your administrator to install the Debian package python3-venv (apt-get install python3-venv)" >&2
      exit 3
    fi
  fi
  # --clear: a half-made .venv (e.g. from before python3-venv was installed) is redone
  python3 -m venv --clear "$venv"
fi
PY="$venv/bin/python"
