"""The one loader of ``profiles/``: media application profiles and record-type tables.

The tables are package data (``mediasec.profiles`` when installed, mapped from the repo's
``profiles/`` folder); in a source checkout without that mapping we fall back to the folder
beside the package. Everything is parsed once, validated, and handed out as frozen objects.

* ``media_profile(name)`` / ``media_profiles()`` - PS3.11 profiles (``media_profiles.toml``)
* ``record_type_for(sop_class_uid)`` - PS3.4/PS3.3 F.4-1 leaf (or root) record type
* ``record_type(name)`` - the F.5 keys of one record type (``record_types.json``)

Provenance of every table: ``profiles/README.md``.
"""

from __future__ import annotations

import functools
import json
import pathlib
import tomllib
from dataclasses import dataclass
from importlib import resources

from mediasec.errors import InternalError, UsageError

__all__ = ["KeySpec", "RecordTypeSpec", "MediaProfile", "FileIdRules", "media_profiles",
           "media_profile", "record_types", "record_type", "record_type_for", "sop_class_name",
           "fill_value", "hierarchy", "transfer_syntax_name", "file_id_rules", "read_data"]


@dataclass(frozen=True)
class KeySpec:
    """One directory record key: tag, keyword, VR and its Type (``1``, ``1C``, ``2``, ``3``)."""

    tag: int
    keyword: str
    vr: str
    type: str

    @property
    def required(self) -> bool:
        return self.type == "1"


@dataclass(frozen=True)
class RecordTypeSpec:
    name: str
    level: str          # root | study | series | leaf  (PATIENT is root)
    keys: tuple[KeySpec, ...]


@dataclass(frozen=True)
class FileIdRules:
    max_components: int
    max_component_length: int
    charset: frozenset[str]


@dataclass(frozen=True)
class MediaProfile:
    """A PS3.11 media application profile, as data."""

    id: str
    title: str
    annex: str
    medium: str
    media_annex: str
    filesystem: str
    capacity_bytes: int | None
    max_file_bytes: int | None
    transfer_syntaxes: tuple[str, ...]
    key_set: str
    roles: tuple[str, ...]
    family: str
    secure: bool
    #: extra keys per record type from the profile's key set (D.3-2 / H.3-2)
    extra_keys: tuple[tuple[str, tuple[KeySpec, ...]], ...]

    def allows(self, transfer_syntax: str) -> bool:
        return transfer_syntax in self.transfer_syntaxes

    def keys_for(self, record_type: str) -> tuple[KeySpec, ...]:
        for name, keys in self.extra_keys:
            if name == record_type:
                return keys
        return ()


def read_data(name: str) -> bytes:
    """Bytes of one file of ``profiles/`` (package data first, then the source checkout)."""
    try:
        res = resources.files("mediasec.profiles").joinpath(name)
        if res.is_file():
            return res.read_bytes()
    except ModuleNotFoundError:
        pass
    path = pathlib.Path(__file__).resolve().parent.parent / "profiles" / name
    try:
        return path.read_bytes()
    except FileNotFoundError as exc:
        raise InternalError(f"package data {name!r} is missing (installation broken?)") from exc


def _key(d: dict) -> KeySpec:
    return KeySpec(tag=int(d["tag"], 16), keyword=d["keyword"], vr=d["vr"], type=d["type"])


@functools.lru_cache(maxsize=None)
def _profiles_doc() -> dict:
    return tomllib.loads(read_data("media_profiles.toml").decode("utf-8"))


@functools.lru_cache(maxsize=None)
def _record_doc() -> dict:
    return json.loads(read_data("record_types.json"))


@functools.lru_cache(maxsize=None)
def media_profiles() -> dict[str, MediaProfile]:
    doc = _profiles_doc()
    key_sets = {name: tuple((rt, tuple(_key(k) for k in keys)) for rt, keys in table.items())
                for name, table in doc["key_sets"].items()}
    out: dict[str, MediaProfile] = {}
    for row in doc["profile"]:
        if row["key_set"] not in key_sets:
            raise InternalError(f"profile {row['id']}: unknown key set {row['key_set']}")
        out[row["id"]] = MediaProfile(
            id=row["id"], title=row["title"], annex=row["annex"], medium=row["medium"],
            media_annex=row["media_annex"], filesystem=row["filesystem"],
            capacity_bytes=row.get("capacity_bytes"), max_file_bytes=row.get("max_file_bytes"),
            transfer_syntaxes=tuple(row["transfer_syntaxes"]), key_set=row["key_set"],
            roles=tuple(row["roles"]), family=row["family"], secure=bool(row["secure"]),
            extra_keys=key_sets[row["key_set"]])
    return out


def media_profile(name: str) -> MediaProfile:
    """The profile called ``name`` (case-insensitive); ``UsageError`` listing the known ones."""
    profiles = media_profiles()
    found = profiles.get(name) or profiles.get(name.upper())
    if found is None:
        raise UsageError(f"unknown media profile {name!r} (known: {', '.join(profiles)})",
                         code="USAGE_UNKNOWN_PROFILE")
    return found


@functools.lru_cache(maxsize=None)
def file_id_rules() -> FileIdRules:
    d = _profiles_doc()["file_id"]
    return FileIdRules(max_components=d["max_components"],
                       max_component_length=d["max_component_length"],
                       charset=frozenset(d["charset"]))


@functools.lru_cache(maxsize=None)
def record_types() -> dict[str, RecordTypeSpec]:
    return {name: RecordTypeSpec(name=name, level=d["level"],
                                 keys=tuple(_key(k) for k in d["keys"]))
            for name, d in _record_doc()["record_types"].items()}


def record_type(name: str) -> RecordTypeSpec:
    try:
        return record_types()[name]
    except KeyError:
        raise InternalError(f"unknown directory record type {name!r}") from None


@functools.lru_cache(maxsize=None)
def _sop_map() -> dict[str, tuple[str, str]]:
    return {uid: (d["record_type"], d["name"]) for uid, d in _record_doc()["sop_classes"].items()}


def record_type_for(sop_class_uid: str) -> str | None:
    """The directory record type for a storage SOP class, or None if it has none."""
    hit = _sop_map().get(sop_class_uid)
    return hit[0] if hit else None


def sop_class_name(sop_class_uid: str) -> str | None:
    hit = _sop_map().get(sop_class_uid)
    return hit[1] if hit else None


def fill_value(keyword: str) -> str | None:
    """The configured made-up value for ``keyword`` under ``--fill-missing`` (or None)."""
    return _record_doc()["fill_values"].get(keyword)


@functools.lru_cache(maxsize=None)
def hierarchy() -> dict[str, frozenset[str]]:
    """Allowed child record types per parent type (``ROOT`` for the root directory)."""
    return {parent: frozenset(children)
            for parent, children in _record_doc()["hierarchy"].items()}


def transfer_syntax_name(uid: str) -> str:
    return _profiles_doc()["transfer_syntax_names"].get(uid, uid)
