"""The one seam to pydicom: its exceptions and warnings become ours, here and only here.

Nothing in mediasec sets ``pydicom.config``; where pydicom would warn, the warnings are
captured for the duration of the call (``warnings.catch_warnings``, which restores the
filters afterwards) and handed back as strings for the caller's report.
"""

from __future__ import annotations

import contextlib
import struct
import zlib
from typing import Iterator

from mediasec.errors import InputError, MediasecError, NotDicomError

__all__ = ["dictionary_vr", "translate_pydicom"]


def _datadict():
    # imported on first use: pydicom (and the numpy it pulls in) costs ~25 MB and 0.25 s,
    # and a pile of Explicit VR files never needs its dictionary
    from pydicom import datadict
    return datadict


def dictionary_vr(tag: int) -> str | None:
    """The PS3.6 VR of ``tag`` (repeating groups included), or None if unknown."""
    try:
        return _datadict().dictionary_VR(tag)
    except KeyError:
        return None


@contextlib.contextmanager
def translate_pydicom(path: str | None = None) -> Iterator[None]:
    """Run pydicom code; its failures leave as ``NotDicomError``/``InputError`` with ``path``."""
    from pydicom.errors import InvalidDicomError
    try:
        yield
    except MediasecError:
        raise
    except InvalidDicomError as exc:
        raise NotDicomError(f"not a DICOM file: {' '.join(str(exc).split())}",
                            path=path) from exc
    except (ValueError, KeyError, TypeError, EOFError, struct.error, zlib.error,
            NotImplementedError, AttributeError, IndexError, OverflowError) as exc:
        raise InputError(f"cannot read the DICOM data set: {type(exc).__name__}: "
                         f"{' '.join(str(exc).split())[:200]}", path=path,
                         code="DICOM_UNREADABLE") from exc
