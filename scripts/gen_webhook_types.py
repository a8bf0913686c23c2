"""Generate ``service/domain/webhook_data.py`` from the vendor's webhook document.

    python scripts/gen_webhook_types.py            # rewrite the outputs
    python scripts/gen_webhook_types.py --check    # exit 1 when they are stale

Input: ``scripts/vendor/OpenAPIWebhooks.json``, copied unchanged from Voucherify's
public OpenAPI repository (the v2024-01-01 webhooks; ``--spec`` reads another
copy). Output: one msgspec Struct per documented ``data`` schema (72),
nested objects as their own Structs, the event type -> Struct mapping and the
event types' other spellings; and ``service/domain/webhook_examples.json``, the
vendor's example ``data`` of each event type (samples for ``fanout send``).

The vendor's schemas are a documented shape, not what arrives, so the output is
lenient by construction:

- every field is optional and nullable (``T | None = None``); unknown fields are
  ignored (the receiver publishes the raw ``data`` anyway);
- ``oneOf`` over objects becomes one Struct with the fields of all members (a
  msgspec union holds one object type unless tagged, and these are not);
- enums are plain ``str`` (new values are routine vendor additions, not drift);
- an object with ``additionalProperties`` (or no properties) is ``dict[str, Any]``;
- where the vendor's own examples show a different shape than its schema, the
  field is widened to what the example holds. Those overrides are the table
  ``QUIRKS`` below, each with the example that showed it; the generated field
  carries the same note as a comment. Nothing in the output is edited by hand.
"""

from __future__ import annotations

import argparse
import json
import keyword
import re
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
OUTPUT = ROOT / "service" / "domain" / "webhook_data.py"
EXAMPLES = OUTPUT.with_name("webhook_examples.json")
SPEC = ROOT / "scripts" / "vendor" / "OpenAPIWebhooks.json"

# --- overrides, each from evidence in the vendor's own examples -------------
#
# (generated Struct, JSON field) -> (annotation, where it was seen). In the
# annotation ``T`` stands for the type the schema gives and ``ITEM`` for its
# item type (arrays); ``| None = None`` is added as for every field.
QUIRKS: dict[tuple[str, str], tuple[str, str]] = {
    ("ReferralProgramRefereeReward", "amount"): (
        "T | int",
        "a number, not a string, in the redemption.rollback.* examples",
    ),
    ("CustomerReferrals", "campaigns"): (
        "list[ITEM | str]",
        "items are campaign names, not objects, in the customer.updated example",
    ),
    ("EventVoucherLoyaltyCardPointsExpiredData", "buckets"): (
        "list[T] | T",
        "an array of buckets, not one, in the voucher.loyalty_card.points_expired example",
    ),
}

# The project-settings event list (Project settings -> Webhooks, as the vendor's
# pages describe it) against the vendor's document:
#
# - types it offers that the document gives no data schema: known event types all
#   the same (each its stream, listed and counted like the others), their data
#   published as received, untyped;
SCHEMALESS_TYPES = (
    "campaign.earning_rule.assigned",
    "campaign.earning_rule.deleted",
    "campaign.earning_rule.disabled",
    "campaign.earning_rule.enabled",
    "campaign.earning_rule.updated",
    "campaign.promotion_stack.created",
    "campaign.promotion_stack.updated",
    "campaign.referral_tier.created",
    "campaign.referral_tier.deleted",
    "campaign.referral_tier.updated",
    "campaign.reward.assignment.created",
    "campaign.reward.assignment.deleted",
    "campaign.reward.assignment.updated",
    "campaign.vouchers.added",
    "campaign.vouchers.generation.failed",
    "campaign.vouchers.generation.started",
    "customer.confirmed",
)
# - documented types it offers that the payload schema's ``type`` enum does not list.
PROJECT_SETTINGS_EXTRA = {
    "customer.updated": "in the list since 2025-11 (not sent for bulk updates)",
}

# The vendor's schemas for the shared base (two events point at it) have an
# event-specific variant each; use it, so each of the 72 events has its Struct.
DATA_SCHEMA_OVERRIDES = {
    "EVENTS.CUSTOMER.REWARD_REDEMPTIONS.CREATED": "EventCustomerRewardRedemptionsCreatedData",
    "EVENTS.CUSTOMER.REWARD_REDEMPTIONS.PENDING": "EventCustomerRewardRedemptionsPendingData",
}


# --- a small type algebra ----------------------------------------------------


@dataclass(frozen=True)
class Prim:
    name: str  # str, int, float, bool, datetime, date, Any


@dataclass(frozen=True)
class Arr:
    item: Type


@dataclass(frozen=True)
class Dict:
    value: Type


@dataclass(frozen=True)
class Ref:
    struct: str


@dataclass(frozen=True)
class Union:
    members: tuple[Type, ...]


Type = Prim | Arr | Dict | Ref | Union
ANY = Prim("Any")
FORMATS = {"date-time": "datetime", "date": "date"}


@dataclass
class Field:
    json_name: str
    type: Type
    override: tuple[str, str] | None = None


@dataclass
class StructDef:
    name: str
    doc: str
    fields: dict[str, Field] = field(default_factory=dict)
    base: str = "Model"
    vendor: bool = False  # named after a schema of the vendor's (else after its place)


# --- conversion ---------------------------------------------------------------


def camel(text: str) -> str:
    parts = [p for p in re.split(r"[^A-Za-z0-9]+", text) if p]
    out = "".join(p[:1].upper() + (p[1:].lower() if p.isupper() else p[1:]) for p in parts)
    return out.lstrip("0123456789") or "X"


def attr_name(json_name: str, taken: set[str]) -> str:
    name = re.sub(r"[^A-Za-z0-9_]", "", json_name)
    if not name or name[0].isdigit():
        name = f"f_{name}"
    if keyword.iskeyword(name) or keyword.issoftkeyword(name) or name.startswith("__"):
        name += "_"
    while name in taken:
        name += "_"
    return name


class Generator:
    def __init__(
        self,
        spec: dict[str, Any],
        quirks: dict[tuple[str, str], tuple[str, str]] | None = None,
    ) -> None:
        self.spec = spec
        self.quirks = QUIRKS if quirks is None else quirks
        self.schemas: dict[str, Any] = spec["components"]["schemas"]
        self.structs: dict[str, StructDef] = {}
        self.named: dict[str, Type] = {}
        self.used_quirks: set[tuple[str, str]] = set()

    # -- schema helpers

    def resolve(self, schema: dict[str, Any]) -> dict[str, Any]:
        while "$ref" in schema:
            schema = self.schemas[schema["$ref"].rsplit("/", 1)[1]]
        return schema

    def is_object(self, schema: dict[str, Any]) -> bool:
        schema = self.resolve(schema)
        if "allOf" in schema:
            return all(self.is_object(p) for p in schema["allOf"])
        choices = choices_of(schema)
        if choices:
            return all(self.is_object(p) for p in choices)
        found = kinds(schema)
        return found == ["object"] or ("properties" in schema and not found)

    def open_map(self, schema: dict[str, Any]) -> bool:
        """An object whose keys are data (``additionalProperties``) or unknown (no properties)."""
        schema = self.resolve(schema)
        ap = schema.get("additionalProperties")
        if ap not in (None, False):
            return True
        parts = schema.get("allOf", []) + choices_of(schema)
        if parts:
            return any(self.open_map(p) for p in parts) and not any(
                self.properties(p) for p in parts
            )
        return not schema.get("properties")

    def properties(self, schema: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
        """Properties of an object schema, flattening ``allOf`` and merging ``oneOf``."""
        schema = self.resolve(schema)
        out: list[tuple[str, dict[str, Any]]] = []
        for part in schema.get("allOf", []) + choices_of(schema):
            out.extend(self.properties(part))
        out.extend(schema.get("properties", {}).items())
        return out

    # -- conversion

    def named_type(self, name: str) -> Type:
        if name in self.named:
            return self.named[name]
        schema = self.schemas[name]
        if self.is_object(schema) and not self.open_map(schema):
            struct_name = camel(name)
            self.named[name] = Ref(struct_name)
            self.build_struct(struct_name, schema).vendor = True
            return self.named[name]
        self.named[name] = ANY  # a cycle through a non-object alias stays Any
        converted = self.convert(schema, camel(name))
        self.named[name] = converted
        return converted

    def convert(self, schema: dict[str, Any], context: str) -> Type:
        if "$ref" in schema:
            return self.named_type(schema["$ref"].rsplit("/", 1)[1])
        parts = schema.get("allOf")
        if parts and len(parts) == 1 and not schema.get("properties"):
            return self.convert(parts[0], context)
        choices = choices_of(schema)
        if len(choices) == 1 and not schema.get("properties") and not parts:
            return self.convert(choices[0], context)  # 3.1's oneOf [X, null]: X
        if choices and not self.is_object(schema):
            return union([self.convert(c, f"{context}{i}") for i, c in enumerate(choices)])
        if self.is_object(schema):
            if self.open_map(schema):
                ap = schema.get("additionalProperties")
                if isinstance(ap, dict) and not schema.get("properties") and not self.is_object(ap):
                    return Dict(self.convert(ap, f"{context}Value"))
                return Dict(ANY)
            self.build_struct(context, schema)
            return Ref(context)
        found = kinds(schema)
        if len(found) > 1:  # OpenAPI 3.1: one schema, several JSON types
            return union(
                [self.convert(schema | {"type": k}, f"{context}{i}") for i, k in enumerate(found)]
            )
        kind = found[0] if found else None
        enum = schema.get("enum") or None
        if enum is not None:
            enum = [value for value in enum if value is not None]
        strings = isinstance(enum, list) and all(isinstance(v, str) for v in enum)
        if kind == "array":
            items = schema.get("items")
            if items:
                return Arr(self.convert(items, f"{context}Item"))
            # The vendor puts an item enum on the array itself (distribution_channels).
            return Arr(Prim("str") if strings else ANY)
        if kind == "string":
            return Prim(FORMATS.get(schema.get("format", ""), "str"))
        if kind is None and (strings or isinstance(schema.get("const"), str)):
            return Prim("str")
        if kind == "integer":
            return Prim("int")
        if kind == "number":
            return Prim("float")
        if kind == "boolean":
            return Prim("bool")
        return ANY

    def build_struct(self, name: str, schema: dict[str, Any], base: str = "Model") -> StructDef:
        if name in self.structs:
            raise SystemExit(f"two schemas would generate the Struct {name}")
        schema_resolved = self.resolve(schema)
        struct = StructDef(name, describe(schema_resolved, name), base=base)
        self.structs[name] = struct
        merged: dict[str, list[dict[str, Any]]] = {}
        for prop, sub in self.properties(schema):
            merged.setdefault(prop, []).append(sub)
        for prop, subs in merged.items():
            context = self.unique(f"{name}{camel(prop)}")
            types: list[Type] = []
            for i, sub in enumerate(subs):
                # The same property from several allOf/oneOf parts: objects merge
                # into one Struct, anything else joins a union.
                if (
                    len(subs) > 1
                    and all(self.is_object(s) for s in subs)
                    and not all(self.open_map(s) for s in subs)
                ):
                    self.build_struct(context, {"allOf": subs})
                    types = [Ref(context)]
                    break
                types.append(self.convert(sub, context if i == 0 else f"{context}{i}"))
            struct.fields[prop] = Field(prop, union(types), self.quirks.get((name, prop)))
            if (name, prop) in self.quirks:
                self.used_quirks.add((name, prop))
        return struct

    def unique(self, name: str) -> str:
        while name in self.structs or name in self.schemas:
            name += "_"
        return name


def choices_of(schema: dict[str, Any]) -> list[dict[str, Any]]:
    """The members of a ``oneOf``/``anyOf``, without ``{"type": "null"}`` (OpenAPI 3.1's way
    of saying nullable: every field is nullable here anyway)."""
    members: list[dict[str, Any]] = schema.get("oneOf", []) + schema.get("anyOf", [])
    return [m for m in members if m.get("type") != "null"]


def kinds(schema: dict[str, Any]) -> list[str]:
    """The JSON types a schema names, ``"null"`` left out (OpenAPI 3.1 lists it in ``type``)."""
    kind = schema.get("type")
    listed = [] if kind is None else kind if isinstance(kind, list) else [kind]
    return [k for k in listed if k != "null"]


def describe(schema: dict[str, Any], fallback: str) -> str:
    """A one-line docstring: the schema's title, else its description's first sentence."""
    text = str(schema.get("title") or schema.get("description") or fallback).strip()
    text = re.split(r"(?<=[a-z)`])[.:]\s|\n", text, maxsplit=1)[0].strip().rstrip(".")
    text = text.replace("\\", "").replace('"', "'")
    if len(text) > 86:
        return text[:83].rsplit(" ", 1)[0] + "..."
    return f"{text or fallback}."


def union(types: list[Type]) -> Type:
    """A union msgspec accepts: at most one str-like, one array, one object; else widened."""
    flat: list[Type] = []
    for t in types:
        for m in t.members if isinstance(t, Union) else (t,):
            if m not in flat:
                flat.append(m)
    if ANY in flat:
        return ANY
    if len(flat) == 1:
        return flat[0]
    strs = [t for t in flat if isinstance(t, Prim) and t.name in ("str", "datetime", "date")]
    arrays = [t for t in flat if isinstance(t, Arr)]
    objects = [t for t in flat if isinstance(t, Dict | Ref)]
    rest = [t for t in flat if t not in strs and t not in arrays and t not in objects]
    out: list[Type] = list(rest)
    if strs:
        out.append(strs[0] if len(strs) == 1 else Prim("str"))
    if arrays:
        out.append(arrays[0] if len(arrays) == 1 else Arr(union([a.item for a in arrays])))
    if objects:
        out.append(objects[0] if len(objects) == 1 else Dict(ANY))
    return out[0] if len(out) == 1 else Union(tuple(out))


def render_type(t: Type, same: dict[str, str] | None = None) -> str:
    """The annotation of ``t``; ``same`` maps a Struct to the identical one used instead."""
    if isinstance(t, Prim):
        return t.name
    if isinstance(t, Arr):
        return f"list[{render_type(t.item, same)}]"
    if isinstance(t, Dict):
        return f"dict[str, {render_type(t.value, same)}]"
    if isinstance(t, Ref):
        return (same or {}).get(t.struct, t.struct)
    return " | ".join(render_type(m, same) for m in t.members)


def identical(structs: dict[str, StructDef]) -> dict[str, str]:
    """Structs named after their place that are field for field another one -> that one.

    The vendor repeats inline objects (the same earning rule shape under
    several parents): each is generated once, under the vendor's schema name
    where there is one, else under the first place it appears (by name).
    """
    same: dict[str, str] = {}
    order = sorted(structs.values(), key=lambda s: (not s.vendor, s.name))
    while True:
        first: dict[tuple[Any, ...], str] = {}
        found = False
        for struct in order:
            if struct.name in same or struct.base != "Model":
                continue
            key = tuple(
                (prop, render_type(f.type, same), f.override) for prop, f in struct.fields.items()
            )
            if key in first and not struct.vendor:
                same[struct.name] = first[key]
                found = True
            else:
                first.setdefault(key, struct.name)
        if not found:
            return same


# --- the events -----------------------------------------------------------------


@dataclass
class Event:
    key: str  # the vendor's webhook name, e.g. EVENTS.VOUCHER.PUBLISHED
    type: str  # canonical spelling
    aliases: tuple[str, ...]
    struct: str
    project_settings: bool
    example: Any


def events(spec: dict[str, Any]) -> list[Event]:
    """The 72 documented events, with the canonical spelling of each and its other ones.

    Canonical is the spelling of the payload schemas' enums (the project-settings
    ``type`` and ``event.type``). The other spelling is the one the webhook's own
    name uses (``EVENTS.BUS_VAL_RULE.CREATED`` -> ``bus_val_rule.created``) where
    the two differ; they are matched by the name the example is filed under, else
    by a known rename of the vendor's (``bus_val_rule`` is the short form of
    ``business_validation_rule``; ``customer.segment.entered`` is documented as
    ``customer.entered.segment``; ``distribution.manual_distribution_schedule`` as
    ``manual_distribution_schedule``).
    """
    schemas = spec["components"]["schemas"]
    project = schemas["WebhookProjectSettingPayload"]["properties"]
    project_types: list[str] = project["type"]["enum"]
    enum = set(project_types) | set(project["event"]["properties"]["type"]["enum"])
    out = []
    for key, item in spec["webhooks"].items():
        content = item["post"]["requestBody"]["content"]["application/json"]
        struct = DATA_SCHEMA_OVERRIDES.get(key) or content["schema"]["$ref"].rsplit("/", 1)[1]
        (example,) = (e["value"] for e in content["examples"].values())
        spelled = key.removeprefix("EVENTS.").lower()
        canonical = spelled if spelled in enum else _canonical(spelled, enum)
        aliases = () if canonical == spelled else (spelled,)
        in_project = canonical in project_types or canonical in PROJECT_SETTINGS_EXTRA
        out.append(Event(key, canonical, aliases, camel(struct), in_project, example))
    return out


def _canonical(spelled: str, enum: set[str]) -> str:
    candidates = {
        spelled.replace("bus_val_rule.", "business_validation_rule.", 1),
        spelled.removeprefix("distribution."),
        ".".join(_swap_last_two(spelled.split("."))),
    }
    found = sorted(c for c in candidates if c in enum)
    # Not in the enums at all (distribution-only events): the name is canonical.
    return found[0] if found else spelled


def _swap_last_two(parts: list[str]) -> list[str]:
    return [*parts[:-2], parts[-1], parts[-2]] if len(parts) > 2 else parts


# --- rendering --------------------------------------------------------------------

HEADER = '''\
# Generated by scripts/gen_webhook_types.py from the vendor's OpenAPIWebhooks.json.
# Do not edit: change the generator (its QUIRKS table holds the hand-made parts).
# ruff: noqa: E501 - event and Struct names are as long as the vendor made them.
"""Typed ``data`` of Voucherify's webhook events (API version v2024-01-01), as documented.

Source: ``reference/OpenAPIWebhooks.json`` of github.com/voucherifyio/voucherify-openapi
(commit 65c33a7a), copied to ``scripts/vendor/``.

One Struct per documented event ``data`` schema, nested objects as their own
Structs, field names as in the vendor's JSON. Every field is optional and
nullable and unknown fields are ignored: the schemas describe what Voucherify
documents, and where its own examples disagree the field is widened to what
they hold (a comment on the field names the example).

``BY_TYPE`` maps each event type (the payload schemas' enum spelling) to its
Struct; ``ALIASES`` maps the vendor's other spellings to that one;
``PROJECT_SETTINGS_TYPES`` are the events a project-settings webhook sends (the
others come from distributions). ``SCHEMALESS_TYPES`` are event types the
project-settings list offers with no data schema in the vendor's document: known
types (each its stream) whose data is published untyped.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

import msgspec


class Model(msgspec.Struct, kw_only=True, omit_defaults=True):
    """Base of every generated Struct: absent fields stay absent when re-encoded."""


class WebhookData(Model):
    """Base of the 72 event ``data`` Structs."""
'''


def render(spec: dict[str, Any]) -> str:
    gen = Generator(spec)
    evs = events(spec)
    data_names: list[str] = []
    for ev in evs:
        if ev.struct in gen.structs:
            raise SystemExit(f"{ev.key}: its data Struct {ev.struct} is already generated")
        schema_name = (
            DATA_SCHEMA_OVERRIDES.get(ev.key)
            or spec["webhooks"][ev.key]["post"]["requestBody"]["content"]["application/json"][
                "schema"
            ]["$ref"].rsplit("/", 1)[1]
        )
        gen.named[schema_name] = Ref(ev.struct)
        gen.build_struct(ev.struct, gen.schemas[schema_name], base="WebhookData")
        data_names.append(ev.struct)
    unused = set(QUIRKS) - gen.used_quirks
    if unused:
        raise SystemExit(f"QUIRKS entries match no generated field: {sorted(unused)}")
    documented = {ev.type for ev in evs}
    if set(SCHEMALESS_TYPES) & documented or set(PROJECT_SETTINGS_EXTRA) - documented:
        raise SystemExit("SCHEMALESS_TYPES must be undocumented, PROJECT_SETTINGS_EXTRA documented")

    out = [HEADER]
    same = identical(gen.structs)
    order = data_names + sorted(n for n in gen.structs if n not in data_names and n not in same)
    for name in order:
        out.append(render_struct(gen.structs[name], same))
    out.append(render_tables(evs))
    tables = ["BY_TYPE", "ALIASES", "PROJECT_SETTINGS_TYPES", "SCHEMALESS_TYPES"]
    out.append(render_all(["WebhookData", *order, *tables]))
    return "\n".join(out)


def render_all(names: list[str]) -> str:
    """``__all__``: every Struct and table, the names ``service.webhook_data`` re-exports
    (sorted as ruff's RUF022 sorts: constants, then classes)."""
    ordered = sorted(names, key=lambda name: (not name.isupper(), name))
    items = "".join(f'    "{name}",\n' for name in ordered)
    return (
        f"\n#: The public names, re-exported by ``service.webhook_data``.\n__all__ = [\n{items}]\n"
    )


def render_struct(struct: StructDef, same: dict[str, str]) -> str:
    lines = [f"\n\nclass {struct.name}({struct.base}):", f'    """{struct.doc}"""', ""]
    taken: set[str] = set()
    for prop, fld in struct.fields.items():
        attr = attr_name(prop, taken)
        taken.add(attr)
        annotation = render_type(fld.type, same)
        if fld.override is not None:
            template, evidence = fld.override
            item = render_type(fld.type.item, same) if isinstance(fld.type, Arr) else "Any"
            annotation = re.sub(r"\bITEM\b", item, re.sub(r"\bT\b", annotation, template))
            lines.append(f"    # Widened: {evidence}.")
        if annotation != "Any":
            annotation = f"{annotation} | None"
        default = "None" if attr == prop else f'msgspec.field(default=None, name="{prop}")'
        lines.append(f"    {attr}: {annotation} = {default}")
    if not struct.fields:
        lines.append("    pass")
    return "\n".join(lines)


def render_tables(evs: list[Event]) -> str:
    lines = [
        "\n\n#: Event type (canonical spelling) -> the Struct of its ``data``, in vendor order.",
        "BY_TYPE: dict[str, type[WebhookData]] = {",
    ]
    lines += [f'    "{ev.type}": {ev.struct},' for ev in evs]
    lines += [
        "}",
        "",
        "#: The vendor's other spellings of an event type -> the canonical one.",
        "ALIASES: dict[str, str] = {",
    ]
    lines += [f'    "{alias}": "{ev.type}",' for ev in evs for alias in ev.aliases]
    lines += [
        "}",
        "",
        "#: Events sent by project-settings webhooks; the others come from distributions.",
        "PROJECT_SETTINGS_TYPES: frozenset[str] = frozenset(",
        "    {",
    ]
    lines += [f'        "{ev.type}",' for ev in evs if ev.project_settings]
    lines += [
        "    }",
        ")",
        "",
        "#: Offered by project settings with no data schema: known types, data untyped.",
        "SCHEMALESS_TYPES: tuple[str, ...] = (",
    ]
    lines += [f'    "{type_}",' for type_ in SCHEMALESS_TYPES]
    lines += [")", ""]
    return "\n".join(lines)


# --- entry point ------------------------------------------------------------------


def ruff_format(source: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "ruff", "format", "--stdin-filename", str(OUTPUT), "-"],
        input=source,
        capture_output=True,
        text=True,
        check=False,
        cwd=ROOT,
    )
    if done.returncode != 0:
        raise SystemExit(f"ruff format failed:\n{done.stderr}")
    return done.stdout


def render_examples(spec: dict[str, Any]) -> str:
    """The vendor's example ``data`` of each event type, for samples and tests."""
    document = {
        "generated": "by scripts/gen_webhook_types.py from the vendor's OpenAPIWebhooks.json; "
        "do not edit",
        "examples": {ev.type: ev.example for ev in events(spec)},
    }
    return json.dumps(document, indent=1, ensure_ascii=False) + "\n"


def generate(spec_path: Path) -> dict[str, str]:
    """File name (in ``service/domain``) -> content."""
    spec = json.loads(spec_path.read_text(encoding="utf-8"))
    return {OUTPUT.name: ruff_format(render(spec)), EXAMPLES.name: render_examples(spec)}


def main(argv: list[str] | None = None) -> int:
    return run(__doc__, generate, SPEC, "OpenAPIWebhooks.json", argv)


def run(
    doc: str | None,
    generate_files: Callable[[Path], dict[str, str]],
    spec: Path,
    spec_name: str,
    argv: list[str] | None,
) -> int:
    """A generator's command line: write its files, or with ``--check`` exit 1 if stale."""
    parser = argparse.ArgumentParser(description=(doc or "").splitlines()[0])
    parser.add_argument("--spec", default=str(spec), help=f"path of {spec_name}")
    parser.add_argument("--output-dir", default=str(OUTPUT.parent), help="where to write")
    parser.add_argument("--check", action="store_true", help="exit 1 if the output is stale")
    args = parser.parse_args(argv)
    directory = Path(args.output_dir)
    stale = []
    for name, content in generate_files(Path(args.spec)).items():
        path = directory / name
        if args.check:
            if not path.exists() or path.read_text(encoding="utf-8") != content:
                stale.append(path)
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content, encoding="utf-8")
        print(f"wrote {path}")
    script = Path(sys.argv[0]).name
    for path in stale:
        print(f"{path} is stale: run python scripts/{script}", file=sys.stderr)
    return 1 if stale else 0


if __name__ == "__main__":
    sys.exit(main())
