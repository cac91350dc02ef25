"""PS3.15 Table E.1-1 as data: rows, options, and the action one attribute gets.

The table is ``profiles/deid_table_e1_1_2026d.json`` (a verbatim copy of the 2026d edition;
provenance in ``profiles/README.md``); nothing of it is retyped here. ``Profile`` resolves,
for one attribute occurrence, the Basic Profile action overridden by the selected options,
and a compound code (``X/Z/D`` ...) by the attribute's Type (``deid_policy.json``).
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass

from mediasec._data import read_data
from mediasec.errors import UsageError

__all__ = ["OPTIONS", "Row", "Profile", "load_table", "method_codes", "safe_private",
           "clean_words", "burned_in_risk", "structured_content_codes"]

#: CLI option name -> (E.1-1 column, CID 7050 code value)
OPTIONS = {
    "retain-safe-private": ("rtnSafePrivOpt", "113111"),
    "retain-uids": ("rtnUIDsOpt", "113110"),
    "retain-device-identity": ("rtnDevIdOpt", "113109"),
    "retain-institution-identity": ("rtnInstIdOpt", "113112"),
    "retain-patient-characteristics": ("rtnPatCharsOpt", "113108"),
    "retain-long-full-dates": ("rtnLongFullDatesOpt", "113106"),
    "retain-long-modified-dates": ("rtnLongModifDatesOpt", "113107"),
    "clean-descriptors": ("cleanDescOpt", "113105"),
    "clean-structured-content": ("cleanStructContOpt", "113104"),
    "clean-graphics": ("cleanGraphOpt", "113103"),
}
BASIC_CODE = "113100"
SIMPLE = frozenset("DZXKCU")
COMPOUND = frozenset({"Z/D", "X/Z", "X/D", "X/Z/D", "X/Z/U*"})


def _json(name: str):
    return json.loads(read_data(name))


@dataclass(frozen=True)
class Row:
    tag: str            # as printed, "(0010,0010)"
    name: str
    std_comp_iod: bool
    actions: tuple      # ((column, code), ...) in table order, basicProfile first

    def action(self, column: str) -> str | None:
        for c, a in self.actions:
            if c == column:
                return a
        return None


@dataclass(frozen=True)
class Table:
    exact: dict          # int tag -> Row
    masked: tuple        # ((mask, value, Row), ...) for 50xx/60xx rows
    private: Row


@functools.lru_cache(maxsize=1)
def load_table() -> Table:
    rows = _json("deid_table_e1_1_2026d.json")
    columns = ["basicProfile"] + [c for c, _ in OPTIONS.values()]
    exact, masked, private = {}, [], None
    for r in rows:
        acts = tuple((c, r[c]) for c in columns if r.get(c))
        row = Row(r["tag"], r["name"], r.get("stdCompIOD") == "Y", acts)
        for _, a in acts:
            if a not in SIMPLE and a not in COMPOUND:
                raise ValueError(f"unknown action code {a!r} in row {r['tag']}")
        tag = r["tag"]
        if "ODD" in tag:
            private = row
        elif "X" in tag:
            g, e = tag.strip("()").split(",")
            mask = int("".join("0" if ch == "X" else "F" for ch in g + e), 16)
            value = int((g + e).replace("X", "0"), 16)
            masked.append((mask, value, row))
        else:
            exact[int(tag.strip("()").replace(",", ""), 16)] = row
    if private is None:
        raise ValueError("Table E.1-1 has no private-attributes row")
    return Table(exact, tuple(masked), private)


@functools.lru_cache(maxsize=1)
def method_codes() -> dict:
    """CID 7050 code value -> code meaning."""
    return {c["code_value"]: c["code_meaning"] for c in _json("deid_method_codes.json")["codes"]}


@functools.lru_cache(maxsize=1)
def safe_private() -> frozenset:
    """(group, creator stripped, element low byte) of Table E.3.10-1."""
    rows = _json("deid_safe_private.json")["rows"]
    return frozenset((int(r["group"], 16), r["private_creator"].strip(),
                      int(r["element_low_byte"], 16)) for r in rows)


@functools.lru_cache(maxsize=1)
def _policy() -> dict:
    return _json("deid_policy.json")


def clean_words() -> frozenset:
    return frozenset(w.upper() for w in _policy()["clean_tokens"]["words"])


def burned_in_risk() -> tuple[dict, dict]:
    p = _policy()["burned_in_risk"]
    return p["always"], p["unless_flag_no"]


@functools.lru_cache(maxsize=1)
def structured_content_codes() -> dict:
    """(scheme, code value) -> row of Table E.3.4-1 (2020b)."""
    rows = _json("deid_clean_structured_content.json")["rows"]
    return {(r["codingSchemeDesignator"], r["codeValue"]): r for r in rows}


@functools.lru_cache(maxsize=1)
def _compound_types() -> dict:
    out = {}
    for k, v in _policy()["compound_types"].items():
        if k == "about":
            continue
        out[int(k, 16)] = v
    return out


_ACTION_TYPE = None


def _by_type() -> dict:
    global _ACTION_TYPE
    if _ACTION_TYPE is None:
        _ACTION_TYPE = {c["code"]: c["by_attribute_type"]
                        for c in _json("deid_action_codes.json")["codes"]}
    return _ACTION_TYPE


class Profile:
    """The Basic Profile plus a set of options, ready to give each tag its action."""

    def __init__(self, options=()):
        opts = []
        for o in options:
            if o not in OPTIONS:
                raise UsageError(f"unknown de-identification option {o!r} (choose from "
                                 f"{', '.join(OPTIONS)})", code="USAGE_DEID_OPTION")
            if o not in opts:
                opts.append(o)
        if "retain-long-full-dates" in opts and "retain-long-modified-dates" in opts:
            raise UsageError("retain-long-full-dates and retain-long-modified-dates exclude "
                             "each other", code="USAGE_DEID_OPTION")
        self.options = tuple(o for o in OPTIONS if o in opts)   # table order, stable
        self.columns = frozenset(OPTIONS[o][0] for o in self.options)
        self.table = load_table()
        self._cache: dict = {}

    def has(self, option: str) -> bool:
        return option in self.options

    @property
    def codes(self) -> list[tuple[str, str]]:
        """(code value, meaning) of CID 7050 for the profile and each option used."""
        m = method_codes()
        return [(BASIC_CODE, m[BASIC_CODE])] + [(OPTIONS[o][1], m[OPTIONS[o][1]])
                                                 for o in self.options]

    @property
    def temporal(self) -> str:
        """Longitudinal Temporal Information Modified (0028,0303)."""
        if self.has("retain-long-full-dates"):
            return "UNMODIFIED"
        if self.has("retain-long-modified-dates"):
            return "MODIFIED"
        return "REMOVED"

    def row_for(self, tag: int) -> Row | None:
        if tag >> 16 & 1:
            return self.table.private
        row = self.table.exact.get(tag)
        if row is None:
            for mask, value, r in self.table.masked:
                if tag & mask == value:
                    return r
        return row

    def action(self, tag: int, sop_class: str = "") -> tuple[str, Row | None]:
        """The simple action (D Z X K C U, or ``U*``: keep the sequence and map its UIDs)
        for ``tag`` in an instance of ``sop_class``; ``("", None)`` when no row lists it."""
        key = (tag, sop_class)
        hit = self._cache.get(key)
        if hit is not None:
            return hit
        row = self.row_for(tag)
        if row is None:
            out = ("", None)
        else:
            out = (self._resolve(tag, row, sop_class), row)
        self._cache[key] = out
        return out

    def _resolve(self, tag: int, row: Row, sop_class: str) -> str:
        act = row.action("basicProfile")
        chosen = [a for c, a in row.actions if c in self.columns]
        if chosen:
            # an option's requirement overrides the profile; between options, C (clean)
            # is stricter than K (keep) [INT, spec section 3 step 2]
            act = "C" if "C" in chosen else chosen[0]
        if act in COMPOUND:
            if not row.std_comp_iod:
                return "X"      # not in any standard IOD: its first letter
            act = self._by_attribute_type(tag, act, sop_class)
        elif act == "X" and self._type_of(tag, sop_class) == "1":
            act = "D"           # Type 1 in this IOD: removing it would break the IOD (E.1.1)
        return act

    @staticmethod
    def _type_of(tag: int, sop_class: str) -> str | None:
        spec = _compound_types().get(tag)
        if spec is None:
            return None
        typ = spec["default"]
        for prefix, t in spec.get("by_sop_class_prefix", {}).items():
            if sop_class.startswith(prefix):
                typ = t
        return typ

    def _by_attribute_type(self, tag: int, act: str, sop_class: str) -> str:
        typ = self._type_of(tag, sop_class)
        if typ is None:
            typ = "2" if act == "X/Z" else "1"
        choice = _by_type()[act].get(typ) or _by_type()[act].get(typ.rstrip("C"))
        if choice is None:
            raise ValueError(f"no action for Type {typ} of code {act}")
        if act == "X/Z/U*" and choice not in ("X", "Z"):
            return "U*"
        return choice
