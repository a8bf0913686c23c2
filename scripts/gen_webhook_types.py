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
import re
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

# The schema conversion both generators share, found through sys.path.
from schema_types import (
    Arr,
    Generator,
    Ref,
    StructDef,
    attr_name,
    camel,
    identical,
    render_type,
)

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
    gen = Generator(spec, QUIRKS)
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
