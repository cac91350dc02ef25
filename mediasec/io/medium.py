"""Received media at the edge: ``open_medium(path)`` gives the ``MediumSource``
(``mediasec.media.source``) of an ISO image or block device (``io.iso.IsoSource``, pycdlib,
never mounted) or of a folder or mount (``io.folder.FolderSource``), each beside its writer;
``medium_spec``/``reopen`` let a worker process reopen the same medium from a picklable spec
(an image is reread by byte extents, ``io.iso.RawImage``, without a second parse). The
worker tasks over a medium are in ``io.workers``.
"""

from __future__ import annotations

import errno
import os
import stat

from mediasec.errors import InputError, UsageError
from mediasec.io.folder import FolderSource
from mediasec.io.fs import env_error
from mediasec.io.iso import CHUNK, IsoSource, RawImage

__all__ = ["IsoSource", "FolderSource", "open_medium", "medium_spec", "reopen", "CHUNK"]


def medium_spec(path: str) -> tuple:
    """``("iso"|"folder", absolute path)`` after the usage checks (exists, readable kind),
    without parsing anything: a pool can be started from it before the medium is opened."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise UsageError("no such file or folder", path=path, code="USAGE_NO_MEDIUM") from None
    except OSError as exc:
        raise env_error(exc, path) from exc
    if stat.S_ISDIR(st.st_mode):
        if not os.access(path, os.R_OK | os.X_OK):
            raise env_error(OSError(errno.EACCES, "permission denied", path), path)
        return ("folder", os.path.realpath(path))
    if stat.S_ISREG(st.st_mode) or stat.S_ISBLK(st.st_mode):
        if not os.access(path, os.R_OK):
            raise env_error(OSError(errno.EACCES, "permission denied", path), path)
        return ("iso", os.path.abspath(path))
    raise InputError("neither an ISO image nor a folder", path=path, code="MEDIUM_NOT_ISO")


def open_medium(path: str):
    """``IsoSource`` for an image file or block device, ``FolderSource`` for a folder."""
    kind, _ = medium_spec(path)
    return FolderSource(path) if kind == "folder" else IsoSource(path)


def reopen(spec: tuple):
    """What a worker reads with: ``open(handle)`` for the medium ``worker_spec()`` named."""
    kind, path = spec
    if kind == "iso":
        return RawImage(path)
    if kind == "folder":
        return FolderSource(path)
    raise UsageError(f"unknown medium kind {kind!r}", code="USAGE")
