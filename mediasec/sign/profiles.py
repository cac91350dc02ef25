"""PS3.15 Annex C signature profiles, read from ``profiles/signature_profiles.toml``."""

from __future__ import annotations

import functools
import tomllib
from dataclasses import dataclass

from mediasec._data import read_data
from mediasec.errors import UsageError

__all__ = ["SignatureProfile", "signature_profiles", "signature_profile", "purposes",
           "STATUS_TAGS", "parse_tag", "tag_str", "profiles_satisfied", "mac_sets"]


def parse_tag(text: str) -> int:
    g, e = text.replace("(", "").replace(")", "").split(",")
    return (int(g, 16) << 16) | int(e, 16)


def tag_str(tag: int) -> str:
    return f"{tag >> 16:04X},{tag & 0xFFFF:04X}"


@dataclass(frozen=True)
class SignatureProfile:
    name: str
    title: str
    dcmsign: str
    top_level_only: bool
    status_tags: bool
    required: tuple[int, ...]           # exact tags
    required_masks: tuple[int, ...]     # repeating groups: element numbers of 60xx / 50xx
    write_minimum: tuple[int, ...] = ()
    purpose_required: bool = False
    sop_class_prefix: str | None = None
    verified_purpose: str | None = None
    verified_required: tuple[int, ...] = ()

    def required_present(self, present) -> set[int]:
        """The profile's tags among ``present`` (an iterable of tags at one level)."""
        present = set(present)
        out = {t for t in self.required if t in present}
        for t in present:
            g = t >> 16
            if (0x6000 <= g <= 0x601E or 0x5000 <= g <= 0x501E) and not g & 1:
                base = 0x60000000 if g >= 0x6000 else 0x50000000
                if (base | (t & 0xFFFF)) in self.required_masks:
                    out.add(t)
        return out


@functools.lru_cache(maxsize=1)
def _doc() -> dict:
    return tomllib.loads(read_data("signature_profiles.toml").decode("utf-8"))


def _split(tags) -> tuple[tuple[int, ...], tuple[int, ...]]:
    exact, masks = [], []
    for t in tags:
        if "xx" in t.lower():
            masks.append(parse_tag(t.lower().replace("xx", "00")))
        else:
            exact.append(parse_tag(t))
    return tuple(exact), tuple(masks)


@functools.lru_cache(maxsize=1)
def signature_profiles() -> dict[str, SignatureProfile]:
    out = {}
    for name, d in _doc()["profiles"].items():
        exact, masks = _split(d.get("required", ()))
        out[name] = SignatureProfile(
            name=name, title=d["title"], dcmsign=d["dcmsign"],
            top_level_only=bool(d.get("top_level_only")), status_tags=bool(d.get("status_tags")),
            required=exact, required_masks=masks,
            write_minimum=tuple(parse_tag(t) for t in d.get("write_minimum", ())),
            purpose_required=bool(d.get("purpose_required")),
            sop_class_prefix=d.get("sop_class_prefix"),
            verified_purpose=d.get("verified_purpose"),
            verified_required=tuple(parse_tag(t) for t in d.get("verified_required", ())))
    return out


def signature_profile(name: str) -> SignatureProfile:
    try:
        return signature_profiles()[name]
    except KeyError:
        raise UsageError(f"unknown signature profile {name!r} (choose from "
                         f"{', '.join(signature_profiles())})", code="USAGE") from None


@functools.lru_cache(maxsize=1)
def purposes() -> tuple[str, dict[str, str]]:
    d = dict(_doc()["purposes"])
    scheme = d.pop("scheme")
    return scheme, {str(k): v for k, v in d.items()}


@functools.lru_cache(maxsize=1)
def mac_sets() -> dict[str, tuple[str, ...]]:
    return {k: tuple(v) for k, v in _doc()["macs"].items()}


STATUS_TAGS = tuple(parse_tag(t) for t in _doc()["status"]["tags"])


def profiles_satisfied(*, rsa: bool, mac_ok: bool, ts_ok: bool, top_level: bool,
                       signed: set[int], present: set[int], sop_class: str | None,
                       purpose: str | None, verified: bool) -> list[str]:
    """The profiles a (cryptographically checked) signature meets, inferred as dcmsign does."""
    if not (rsa and mac_ok and ts_ok):
        return []
    # the instances of a series share their element sets: remembered per shape
    return list(_satisfied(top_level, frozenset(signed), frozenset(present), sop_class,
                           purpose, verified))


@functools.lru_cache(maxsize=256)
def _satisfied(top_level, signed, present, sop_class, purpose, verified) -> tuple[str, ...]:
    out = []
    for name, p in signature_profiles().items():
        if p.top_level_only and not top_level:
            continue
        if p.sop_class_prefix and not (sop_class or "").startswith(p.sop_class_prefix):
            continue
        if p.purpose_required and not purpose:
            continue
        if not p.required_present(present) <= signed:
            continue
        if (p.verified_purpose and verified and purpose == p.verified_purpose
                and not {t for t in p.verified_required if t in present} <= signed):
            continue
        out.append(name)
    return tuple(out)
