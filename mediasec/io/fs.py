"""Atomic outputs and contained paths.

``AtomicOutput`` writes a file so that the target path either holds the complete
result or nothing at all:

* ``secret=True`` (plaintext of protected content): the data goes into an *anonymous*
  ``O_TMPFILE`` inode in the target's folder, which has no name until ``commit()``
  links it in; a crash or ``kill -9`` frees it and leaves nothing behind. Where the
  file system has no ``O_TMPFILE``, ``AnonymousUnsupported`` is raised *before* any
  byte is written, so the caller can verify first and write afterwards.
* other outputs the same by default (``anonymous=False`` or a file system without
  ``O_TMPFILE``: a named temp file ``.NAME.partial-XXXX`` beside the target).

``commit()`` fsyncs, names the file (an anonymous one whose target does not exist is
linked straight to it; otherwise it is renamed over the target with ``os.replace``) and
fsyncs the folder; leaving the ``with`` block without ``commit()`` (an error) removes
everything.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import fcntl
import os
import re
import secrets
import shutil
import stat
import subprocess
import sys

from mediasec.errors import EnvironmentFailure, InputError, MediasecError, UsageError

__all__ = ["AtomicOutput", "AnonymousUnsupported", "StagingDir", "fsync_dir", "env_error",
           "open_regular", "check_new_output", "clean_stale", "file_ids"]


class AnonymousUnsupported(EnvironmentFailure):
    code = "ENV_NO_TMPFILE"


_AT_FDCWD = -100
_AT_SYMLINK_FOLLOW = 0x400
_libc = None


def _link_fd(fd: int, name: str) -> None:
    """linkat(2) an O_TMPFILE descriptor to ``name`` (os.link would link the /proc symlink)."""
    global _libc
    if _libc is None:
        _libc = ctypes.CDLL(None, use_errno=True)
    rc = _libc.linkat(_AT_FDCWD, f"/proc/self/fd/{fd}".encode(), _AT_FDCWD,
                      os.fsencode(name), _AT_SYMLINK_FOLLOW)
    if rc != 0:
        e = ctypes.get_errno()
        raise OSError(e, os.strerror(e), name)


def env_error(exc: OSError, path: str | os.PathLike | None = None) -> MediasecError:
    """Translate an OSError into our EnvironmentFailure, one line, with the file.

    A symbolic-link loop is the input's fault, not the environment's: an InputError."""
    what = exc.strerror or str(exc)
    if exc.errno == errno.ELOOP:
        return InputError("a symbolic link loop", path=os.fspath(path or exc.filename or "")
                          or None, code="INPUT_SYMLINK_LOOP")
    if exc.errno == errno.ENOSPC:
        code = "ENV_DISK_FULL"
    elif exc.errno in (errno.EACCES, errno.EPERM):
        code = "ENV_PERMISSION"
    else:
        code = "ENV_IO"
    err = EnvironmentFailure(what, path=os.fspath(path or exc.filename or "") or None, code=code)
    err.errno = exc.errno
    return err


def _partial_name(parent: str, base: str) -> str:
    return os.path.join(parent, f".{base}.partial-{secrets.token_hex(4)}")


def _lock(fd: int) -> bool:
    """An exclusive ``flock`` without waiting; False when another process holds it."""
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
            return False
        raise
    return True


def clean_stale(target: str) -> list[str]:
    """Remove what a killed earlier run for ``target`` left beside it: our hidden
    ``.NAME.partial-XXXXXXXX`` staging folders and temp files. Each is locked
    (``flock``) by the run that made it for as long as that run lives, so only an
    unlocked one, owned by this user, is removed; anything else is left alone."""
    parent, base = os.path.split(os.path.abspath(target))
    pattern = re.compile(r"\." + re.escape(base) + r"\.partial-[0-9a-f]{8}\Z")
    removed = []
    try:
        names = [n for n in os.listdir(parent) if pattern.match(n)]
    except OSError:
        return removed
    for n in names:
        path = os.path.join(parent, n)
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0))
        except OSError:
            continue
        try:
            st = os.fstat(fd)
            if st.st_uid != os.geteuid() or not _lock(fd):
                continue
            if stat.S_ISDIR(st.st_mode):
                shutil.rmtree(path, ignore_errors=True)
            elif stat.S_ISREG(st.st_mode):
                os.unlink(path)
            else:
                continue
            removed.append(path)
        except OSError:
            continue
        finally:
            os.close(fd)
    return removed


def fsync_dir(path: str | os.PathLike) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _check_target(target: str) -> None:
    if os.path.isdir(target):
        raise UsageError("is a directory; give a file name for the output", path=target,
                         code="USAGE_OUTPUT_IS_DIR")
    try:
        mode = os.stat(target).st_mode
    except OSError:
        mode = None
    if mode is not None and not stat.S_ISREG(mode):  # /dev/null, a FIFO, a socket...
        raise UsageError("output exists and is not a regular file; it is never replaced",
                         path=target, code="USAGE_OUTPUT_NOT_REGULAR")
    parent = os.path.dirname(target) or "."
    if not os.path.isdir(parent):
        raise UsageError(f"parent folder {parent} does not exist", path=target,
                         code="USAGE_NO_OUTPUT_DIR")


def file_ids(paths) -> frozenset:
    """The (device, inode) of each of ``paths`` that exists (for ``check_new_output``)."""
    ids = set()
    for p in paths:
        try:
            st = os.stat(p)
        except OSError:
            continue
        ids.add((st.st_dev, st.st_ino))
    return frozenset(ids)


def check_new_output(target: str | os.PathLike, *, force: bool = False,
                     inputs: tuple = (), input_ids: frozenset | None = None) -> None:
    """Refuse an output that exists (unless ``force``, and then only a regular file that is
    not one of ``inputs``: never in place) or whose parent folder does not exist.
    ``input_ids`` (``file_ids(inputs)``, made once for a job of many outputs) stands for
    ``inputs``: a target that does not exist is no input, and one that does is looked up,
    not compared with every input in turn."""
    target = os.path.abspath(os.fspath(target))
    try:
        st = os.stat(target)
    except OSError:
        st = None
    if st is not None:
        ids = input_ids if input_ids is not None else file_ids(inputs)
        if (st.st_dev, st.st_ino) in ids:
            raise UsageError("output is the input; write to a new path", path=target,
                             code="USAGE_OUTPUT_IS_INPUT")
    if os.path.lexists(target):
        if not force:
            raise UsageError("output already exists; choose a new path (or --force to "
                             "replace it)", path=target, code="USAGE_OUTPUT_EXISTS")
        if os.path.isdir(target) or not os.path.isfile(target):
            raise UsageError("output exists and is not a regular file; --force replaces "
                             "files only", path=target, code="USAGE_OUTPUT_EXISTS")
    parent = os.path.dirname(target)
    if not os.path.isdir(parent):
        raise UsageError(f"parent folder {parent} does not exist", path=target,
                         code="USAGE_NO_OUTPUT_DIR")


class AtomicOutput:
    """A writable binary file that appears at ``target`` only on ``commit()``."""

    def __init__(self, target: str | os.PathLike, *, secret: bool = False,
                 anonymous: bool | None = None, mode: int | None = None):
        self.target = os.path.abspath(os.fspath(target))
        self.secret = secret
        #: O_TMPFILE: nothing named exists until commit (required for secrets; for other
        #: outputs the default too, silently replaced by a named temp file where the file
        #: system lacks it, or where the caller asks for ``anonymous=False``). The named
        #: way scans the folder for a killed run's leftovers before each output, which
        #: costs O(files in the folder) per output: writing thousands of files into one
        #: folder made each one slower (``mediasec sign``, ``protect``, ``deidentify``).
        self.anonymous = True if anonymous is None else (anonymous or secret)
        #: exactly this mode, whatever the umask (default 0600 for secrets, else 0644)
        self.mode = mode if mode is not None else (0o600 if secret else 0o644)
        self._fd: int | None = None
        self._tmpname: str | None = None
        self._file = None
        self.committed = False

    # -- lifecycle ---------------------------------------------------------------------------
    def open(self):
        _check_target(self.target)
        parent = os.path.dirname(self.target)
        try:
            if self.anonymous:
                try:
                    self._open_anonymous(parent)
                except AnonymousUnsupported:
                    if self.secret:
                        raise
                    self.anonymous = False
            if not self.anonymous:
                clean_stale(self.target)
                base = os.path.basename(self.target)
                for _ in range(16):
                    name = _partial_name(parent, base)
                    try:
                        self._fd = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL, self.mode)
                    except FileExistsError:
                        continue
                    _lock(self._fd)  # ours while we live (see clean_stale)
                    self._tmpname = name
                    os.fchmod(self._fd, self.mode)  # the umask applies to any create
                    break
        except OSError as exc:
            raise env_error(exc, self.target) from exc
        self._file = os.fdopen(self._fd, "wb", buffering=0, closefd=False)
        return self._file

    def _open_anonymous(self, parent: str) -> None:
        flag = getattr(os, "O_TMPFILE", None)
        if flag is None:
            raise AnonymousUnsupported("no O_TMPFILE on this platform", path=self.target)
        try:
            self._fd = os.open(parent, flag | os.O_RDWR, self.mode)
        except OSError as exc:
            if exc.errno in (errno.EOPNOTSUPP, errno.EISDIR, errno.EINVAL):
                raise AnonymousUnsupported("file system has no O_TMPFILE",
                                           path=self.target) from exc
            raise
        os.fchmod(self._fd, self.mode)  # O_TMPFILE applies the umask like any create

    @property
    def fileno(self) -> int:
        assert self._fd is not None
        return self._fd

    def commit(self, *, exclusive: bool = False) -> None:
        """Make the file appear at ``target``. ``exclusive`` (anonymous files only): link
        it straight to ``target`` in one step, never replacing a file there
        (``FileExistsError``, and the output stays open for another try) - no moment
        exists in which a hidden partial name is on disk."""
        assert self._fd is not None
        parent = os.path.dirname(self.target)
        if self.anonymous:
            # a new target (the usual case): linked straight to its name, complete and
            # durable, in one step (no hidden name, no rename); one that exists is
            # replaced the way below, unless ``exclusive``
            try:
                os.fsync(self._fd)
                os.fchmod(self._fd, self.mode)
                _link_fd(self._fd, self.target)
                fsync_dir(parent)
            except FileExistsError:
                if exclusive:
                    raise
            except OSError as exc:
                raise env_error(exc, self.target) from exc
            else:
                self.committed = True
                self._close()
                return
        try:
            os.fsync(self._fd)
            if self.anonymous:
                # give the anonymous inode a hidden name, then rename it over the target
                _lock(self._fd)
                for _ in range(16):
                    name = _partial_name(parent, os.path.basename(self.target))
                    try:
                        _link_fd(self._fd, name)
                    except FileExistsError:
                        continue
                    self._tmpname = name
                    os.fchmod(self._fd, self.mode)  # the umask applies to any create
                    break
            os.replace(self._tmpname, self.target)
            self._tmpname = None
            fsync_dir(parent)
        except OSError as exc:
            raise env_error(exc, self.target) from exc
        self.committed = True
        self._close()

    def abort(self) -> None:
        self._close()
        if self._tmpname is not None:
            with contextlib.suppress(OSError):
                os.unlink(self._tmpname)
            self._tmpname = None

    def _close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def __enter__(self):
        return self.open()

    def __exit__(self, exc_type, exc, tb):
        if exc_type is not None or not self.committed:
            self.abort()
        return False


class StagingDir:
    """A folder built as ``.NAME.partial-XXXXXXXX`` beside ``target`` and renamed on
    ``commit()``.

    The target must not exist (we never merge into or delete a user's folder). While it is
    built the folder is 0700 (only its owner sees what goes in; ``mode`` is applied at the
    commit) and locked (``flock``) by this process; what a killed earlier run for the same
    target left is removed first (``clean_stale``).

    **A killed run leaves nothing.** A small reaper process (its own session, so Ctrl-C to
    the job and ``kill -9`` of the job's process group do not reach it) holds the read end
    of a pipe whose write end only this process (and its forked workers, which die with it)
    holds. When the pipe closes - at the end of the ``with`` block, or when the job dies,
    however - the reaper removes the staging folder if it still exists (after ``commit()``
    it does not: it was renamed). So a ``kill -9`` of ``extract`` leaves no decrypted file
    behind; ``clean_stale`` stays for a reaper that was killed too.
    """

    def __init__(self, target: str | os.PathLike, *, mode: int = 0o755):
        self.target = os.path.abspath(os.fspath(target))
        self.mode = mode
        self.path: str | None = None
        self.committed = False
        self._fd: int | None = None
        self._reaper = None

    def __enter__(self) -> str:
        if os.path.lexists(self.target):
            raise UsageError("output already exists; choose a new path", path=self.target,
                             code="USAGE_OUTPUT_EXISTS")
        parent = os.path.dirname(self.target)
        if not os.path.isdir(parent):
            raise UsageError(f"parent folder {parent} does not exist", path=self.target,
                             code="USAGE_NO_OUTPUT_DIR")
        clean_stale(self.target)
        name = _partial_name(parent, os.path.basename(self.target))
        try:
            os.mkdir(name, 0o700)
            os.chmod(name, 0o700)
            self._fd = os.open(name, os.O_RDONLY | os.O_DIRECTORY
                               | getattr(os, "O_CLOEXEC", 0))
            _lock(self._fd)
        except OSError as exc:
            raise env_error(exc, self.target) from exc
        self.path = name
        self._reaper = _start_reaper(name)
        return name

    def commit(self) -> None:
        assert self.path is not None
        try:
            os.chmod(self.path, self.mode)
            os.rename(self.path, self.target)
            fsync_dir(os.path.dirname(self.target))
        except OSError as exc:
            raise env_error(exc, self.target) from exc
        self.path = None
        self.committed = True
        self._unlock()

    def _unlock(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def __exit__(self, exc_type, exc, tb):
        if self.path is not None and not self.committed:
            shutil.rmtree(self.path, ignore_errors=True)
            self.path = None
        self._unlock()
        _stop_reaper(self._reaper)
        self._reaper = None
        return False


#: the reaper: wait for the pipe to close, then remove the staging folder if it is still
#: there (a real folder, never a symbolic link: rmtree refuses those)
_REAPER = ("import os, shutil, sys\n"
           "sys.stdin.buffer.read()\n"
           "p = sys.argv[1]\n"
           "if os.path.isdir(p) and not os.path.islink(p):\n"
           "    shutil.rmtree(p, ignore_errors=True)\n")


def _start_reaper(path: str):
    """The reaper of ``path`` (see ``StagingDir``); None where none can be started (the
    next run's ``clean_stale`` is then the only cleaner)."""
    try:
        return subprocess.Popen([sys.executable, "-I", "-S", "-c", _REAPER, path],
                                stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL, start_new_session=True,
                                close_fds=True)
    except OSError:
        return None


def _stop_reaper(proc) -> None:
    if proc is None:
        return
    try:
        proc.stdin.close()
        proc.wait(timeout=2)   # longer only if a forked worker still holds the pipe
    except (OSError, subprocess.TimeoutExpired):
        pass


def open_regular(path: str):
    """``path`` opened for reading, unbuffered, if it is a regular file: a FIFO or a device
    is refused at once (opened non-blocking, never waited on); one-line errors."""
    try:
        # O_NONBLOCK: a FIFO or device must not block the open; refused just below
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            os.close(fd)
            raise UsageError("not a regular file", path=path, code="USAGE_NOT_REGULAR_FILE")
        os.set_blocking(fd, True)
        return os.fdopen(fd, "rb", buffering=0)
    except FileNotFoundError as exc:
        raise UsageError("no such file", path=path, code="USAGE_NO_SUCH_FILE") from exc
    except IsADirectoryError as exc:
        raise UsageError("is a directory, not a file", path=path,
                         code="USAGE_NO_SUCH_FILE") from exc
    except OSError as exc:
        raise env_error(exc, path) from exc
