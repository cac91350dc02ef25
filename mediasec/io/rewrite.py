"""Per-file rewriting jobs (``deidentify``, ``reidentify``) on the file system.

One input file and an output that is not a folder: one output file (``AtomicOutput``).
Otherwise the output is a new folder of ``<SOP Instance UID>.dcm`` files (no input names,
which may carry patient data), built beside its target (``StagingDir``) and renamed at the
end; any error leaves nothing.
"""

from __future__ import annotations

import io
import os
from typing import Callable

from mediasec.errors import MediasecError, UsageError
from mediasec.io.fs import (AnonymousUnsupported, AtomicOutput, StagingDir, env_error, fsync_dir,
                            open_regular)

__all__ = ["list_inputs", "rewrite_files"]


def list_inputs(paths) -> list[str]:
    files = []
    for p in paths:
        if os.path.isdir(p):
            for root, dirs, names in os.walk(p):
                dirs.sort()
                files += [os.path.join(root, n) for n in sorted(names)]
        elif os.path.exists(p):
            files.append(p)
        else:
            raise UsageError("no such file", path=p, code="USAGE_NO_SUCH_FILE")
    if not files:
        raise UsageError("no input files", code="USAGE_NO_INPUT")
    return files


def _open(path: str):
    """A regular file, buffered (a FIFO or device is refused, never waited on)."""
    return io.BufferedReader(open_regular(path), 1 << 16)


def rewrite_files(files, out, step, *, secret: bool,
                  on_duplicate: Callable[[str], None] | None = None):
    """``step(src_file) -> (Rewritten, result)`` over every input, atomically."""
    results = []
    single = len(files) == 1 and not os.path.isdir(out)
    if single:
        target = AtomicOutput(out, secret=secret)
        try:
            dst = target.open()
        except AnonymousUnsupported:
            target = AtomicOutput(out)
            dst = target.open()
        try:
            with _open(files[0]) as src:
                rewritten, result = _step(step, src, files[0])
                _write(rewritten, dst, out)
            results.append((files[0], out, result))
            target.commit()
        finally:
            if not target.committed:
                target.abort()
        return results
    staging = StagingDir(out)
    with staging as folder:
        # a hidden folder, removed on failure and renamed at the end: no file in it is
        # visible under OUT before every input is done (0700 while it holds plaintext)
        os.chmod(folder, 0o700 if secret else 0o755)
        seen = set()
        for path in files:
            with _open(path) as src:
                rewritten, result = _step(step, src, path)
                name = f"{result.sop_instance_uid}.dcm"
                if name in seen:
                    if on_duplicate is not None:
                        on_duplicate(path)
                    continue
                seen.add(name)
                target = os.path.join(folder, name)
                try:
                    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL,
                                 0o600 if secret else 0o644)
                except OSError as exc:
                    raise env_error(exc, os.path.join(out, name)) from exc
                with os.fdopen(fd, "wb", buffering=0) as dst:
                    _write(rewritten, dst, os.path.join(out, name))
                    try:
                        os.fsync(dst.fileno())
                    except OSError as exc:
                        raise env_error(exc, os.path.join(out, name)) from exc
            results.append((path, os.path.join(out, name), result))
        try:
            fsync_dir(folder)
            os.chmod(folder, 0o755)
        except OSError as exc:
            raise env_error(exc, out) from exc
        staging.commit()
    return results


def _write(rewritten, dst, name):
    try:
        rewritten.write_to(dst)
    except OSError as exc:
        raise env_error(exc, name) from exc


def _step(step, src, path):
    try:
        return step(src)
    except MediasecError as exc:
        raise exc.with_path(path)
    except OSError as exc:
        raise env_error(exc, path) from exc
