"""The medium interface the edge implements (``mediasec.io.medium``): a listing of regular
files (``MediumEntry``) with a way to stream each (``MediumSource``), and the listing's
case-, ``;1``- and extension-tolerant lookups (``MediumIndex``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable, Iterator, Protocol

from mediasec.dicom.fileid import normalise_component

__all__ = ["MediumEntry", "MediumSource", "norm_path", "MediumIndex"]


# -- the medium interface ---------------------------------------------------------------------

@dataclass(frozen=True)
class MediumEntry:
    """One file on the medium.

    ``path``: relative, ``/``-separated, as the user sees it (ISO 9660 ``;1`` and trailing
    ``.`` removed). ``handle``: picklable, for ``MediumSource.open`` in any process.
    ``kind``: ``file`` (openable) or ``escape`` (a symbolic link leading outside the root:
    listed, never opened). ``iso9660``: the ISO 9660 name of the same file when the listing
    comes from another namespace (or from ISO 9660 itself), for ``ISO_NAME``.
    """

    path: str
    size: int
    handle: Any = None
    kind: str = "file"
    iso9660: str | None = None


class MediumSource(Protocol):
    """What ``validate_medium`` needs from an ISO image, a folder or a mounted disc."""

    #: e.g. "ISO 9660 image (Joliet names)", "folder"
    description: str
    #: the path given by the user, for messages
    label: str
    #: ISO: the Primary Volume Descriptor's Volume Identifier (stripped); folders: None
    volume_id: str | None

    def entries(self) -> list[MediumEntry]: ...

    def open(self, handle: Any) -> Iterator[bytes]:
        """The file's bytes as chunks, each valid only until the next is requested (the
        byte-path contract of ``mediasec.media.plan.Producer``)."""
        ...

    def worker_spec(self) -> tuple:
        """Picklable: enough for ``mediasec.io.medium.reopen`` to serve ``open(handle)``."""
        ...


def norm_path(path: str) -> str:
    """A stored path as a File ID would spell it: upper case, no ``;1``, no trailing dot."""
    return "/".join(normalise_component(c) for c in path.split("/"))


def _strip_ext(component: str) -> str:
    stem, dot, _ = normalise_component(component).rpartition(".")
    return stem if dot and stem else normalise_component(component)


class MediumIndex:
    """The listing, indexed for exact, case-insensitive and extension-tolerant lookup."""

    def __init__(self, entries: Iterable[MediumEntry]):
        self.entries = list(entries)
        self.by_path: dict[str, MediumEntry] = {}
        self.by_norm: dict[str, MediumEntry] = {}
        self.by_stem: dict[str, MediumEntry] = {}
        for e in self.entries:
            self.by_path.setdefault(e.path, e)
            self.by_norm.setdefault(norm_path(e.path), e)
            parts = e.path.split("/")
            stem_key = "/".join([normalise_component(p) for p in parts[:-1]]
                                + [_strip_ext(parts[-1])])
            self.by_stem.setdefault(stem_key, e)

    def lookup(self, components: tuple[str, ...]) -> tuple[MediumEntry | None, str | None]:
        """``(entry, how)``: how is None (exact), ``case`` or ``extension``."""
        exact = "/".join(components)
        hit = self.by_path.get(exact)
        if hit is not None:
            return hit, None
        norm = "/".join(normalise_component(c) for c in components)
        hit = self.by_norm.get(norm)
        if hit is not None:
            return hit, "case"
        hit = self.by_stem.get(norm)
        if hit is not None:
            return hit, "extension"
        stem = "/".join([normalise_component(c) for c in components[:-1]]
                        + [_strip_ext(components[-1])])
        hit = self.by_stem.get(stem)
        if hit is not None:
            return hit, "extension"
        return None, None
