"""The one seam to pydicom: its exceptions and warnings become ours, here and only here.

Nothing in mediasec sets ``pydicom.config``; where pydicom would warn, the warnings are
captured for the duration of the call (``warnings.catch_warnings``, which restores the
filters afterwards) and handed back as strings for the caller's report.
"""

from __future__ import annotations

import contextlib
import struct
import warnings
import zlib
from typing import Iterator

from mediasec.errors import InputError, MediasecError, NotDicomError

__all__ = ["dictionary_vr", "dictionary_keyword", "translate_pydicom", "captured_warnings"]


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


def dictionary_keyword(tag: int) -> str:
    try:
        return _datadict().keyword_for_tag(tag) or f"({tag >> 16:04X},{tag & 0xFFFF:04X})"
    except Exception:  # noqa: BLE001 - pydicom raises various things for odd tags
        return f"({tag >> 16:04X},{tag & 0xFFFF:04X})"


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


@contextlib.contextmanager
def captured_warnings(into: list[str]) -> Iterator[None]:
    """Collect warnings raised inside (pydicom's included) into ``into`` as one-line strings."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        yield
    into.extend(" ".join(str(w.message).split()) for w in caught)
