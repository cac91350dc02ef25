"""Secrets at the edge: key and certificate files, passwords from the environment or a prompt.

Secrets never come from argv: a password is read from the environment variable whose
*name* a flag gives, or from a prompt when standard input is a terminal; otherwise
the command stops with a usage error instead of hanging.
"""

from __future__ import annotations

import getpass
import os
import sys

from mediasec.errors import InputError, MediasecError, UsageError
from mediasec.io.fs import env_error
from mediasec.pki import certs as pcerts

__all__ = ["read_file", "read_certificates", "read_private_key", "read_password",
           "file_chunks"]


def read_file(path: str, what: str, *, cap: int = 1 << 20) -> bytes:
    try:
        with open(path, "rb") as f:
            data = f.read(cap + 1)
    except FileNotFoundError as exc:
        raise UsageError(f"{what} not found", path=path, code="USAGE_NO_SUCH_FILE") from exc
    except IsADirectoryError as exc:
        raise UsageError(f"{what} is a directory", path=path, code="USAGE_NO_SUCH_FILE") from exc
    except OSError as exc:
        raise env_error(exc, path) from exc
    if len(data) > cap:
        raise InputError(f"{what} is larger than {cap} bytes", path=path)
    return data


def read_certificates(path: str, what: str = "certificate file"):
    try:
        return pcerts.load_certificates(read_file(path, what))
    except MediasecError as exc:
        raise exc.with_path(path)


def read_password(env_var: str | None, *, prompt: bool = False, what: str = "password",
                  confirm: bool = False) -> bytes | None:
    """The password from ``$env_var``, else a terminal prompt if asked for; else None."""
    if env_var:
        if env_var not in os.environ:
            raise UsageError(f"environment variable {env_var} (named by the {what} flag) is "
                             "not set", code="USAGE_ENV_UNSET")
        return os.environ[env_var].encode("utf-8", "surrogateescape")
    if not prompt:
        return None
    if not sys.stdin.isatty():
        raise UsageError(f"a {what} is needed but standard input is not a terminal; use the "
                         "-env flag to name an environment variable", code="USAGE_NO_TTY")
    value = getpass.getpass(f"{what.capitalize()}: ")
    if confirm and getpass.getpass(f"Repeat the {what}: ") != value:
        raise UsageError(f"the two {what}s differ", code="USAGE_PASSWORD_MISMATCH")
    return value.encode("utf-8", "surrogateescape")


def read_private_key(path: str, *, password_env: str | None = None):
    """``(key, bundled_cert_or_None)`` from a PEM/DER/PKCS#12 file; prompts if encrypted."""
    data = read_file(path, "key file")
    password = read_password(password_env, what="key passphrase") if password_env else None
    try:
        return pcerts.load_private_key(data, password)
    except InputError as exc:
        if exc.code == "KEY_NEEDS_PASSWORD" and password is None and sys.stdin.isatty():
            password = read_password(None, prompt=True, what="key passphrase")
            try:
                return pcerts.load_private_key(data, password)
            except MediasecError as exc2:
                raise exc2.with_path(path)
        raise exc.with_path(path)


def file_chunks(f, size: int = 1 << 20):
    """Read an open binary file in ``size`` pieces through two alternating buffers.

    Each yielded view is valid only until the next is requested (the byte-path contract,
    ``mediasec.media.plan.Producer``).
    """
    bufs = (bytearray(size), bytearray(size))
    i = 0
    while True:
        mv = memoryview(bufs[i])
        n = f.readinto(mv)
        if not n:
            return
        yield mv[:n]
        i ^= 1
