"""Exit codes: the only place that knows the numbers (documented in the README).

| code | meaning |
| 0 | done; everything checked is valid |
| 1 | done, and the checked data failed (tampered, bad signature, untrusted, damaged) |
| 2 | cannot do what was asked: usage, unreadable/non-DICOM/non-CMS input, no recipient,
|     wrong password, policy refusal |
| 3 | environment: I/O error, disk full, a peer or port unavailable |
| 4 | internal error: one line plus the path of the saved traceback |
| 130 | interrupted (Ctrl-C, SIGINT); 143 terminated (SIGTERM), 129 (SIGHUP): nothing left |
"""

from __future__ import annotations

import os
import sys
import tempfile
import traceback

from mediasec.errors import (EnvironmentFailure, InputError, MediasecError, UsageError,
                             VerificationError)

__all__ = ["OK", "FAILED", "CANNOT", "ENVIRONMENT", "INTERNAL", "INTERRUPTED", "EXIT_CODES",
           "exit_code_for", "report_error"]

OK, FAILED, CANNOT, ENVIRONMENT, INTERNAL = 0, 1, 2, 3, 4
INTERRUPTED = 130  # 128 + SIGINT; SIGTERM gives 143 and SIGHUP 129 (128 + the signal)
EXIT_CODES = {
    OK: "done; everything checked is valid",
    FAILED: "done, and the checked data failed",
    CANNOT: "cannot do what was asked (usage, unusable input, no recipient, wrong password, "
            "policy refusal)",
    ENVIRONMENT: "environment: I/O error, disk full, peer or port unavailable",
    INTERNAL: "internal error (a bug); the trace is saved",
}


def exit_code_for(exc: BaseException) -> int:
    if isinstance(exc, VerificationError):
        return FAILED
    if isinstance(exc, (UsageError, InputError)):
        return CANNOT
    if isinstance(exc, (EnvironmentFailure, OSError)):
        return ENVIRONMENT
    return INTERNAL


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def report_error(exc: BaseException, *, verbose: bool = False, prog: str = "mediasec") -> int:
    """Print the one-line message for ``exc`` on stderr and return its exit code."""
    code = exit_code_for(exc)
    if isinstance(exc, MediasecError):
        where = f"{exc.path}: " if exc.path else ""
        msg = f"{prog}: {where}{_one_line(exc.message)}"
        if exc.hint:
            msg += f" ({_one_line(exc.hint)})"
    elif isinstance(exc, OSError):
        where = f"{exc.filename}: " if getattr(exc, "filename", None) else ""
        msg = f"{prog}: {where}{_one_line(exc.strerror or exc)}"
    else:
        fd, trace_path = tempfile.mkstemp(prefix="mediasec-trace-", suffix=".txt")
        with os.fdopen(fd, "w") as f:
            traceback.print_exception(exc, file=f)
        msg = (f"{prog}: internal error: {type(exc).__name__}: {_one_line(exc)} "
               f"(trace saved to {trace_path})")
    print(msg, file=sys.stderr)
    if verbose:
        traceback.print_exception(exc, file=sys.stderr)
    return code
