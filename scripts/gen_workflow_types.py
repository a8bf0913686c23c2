"""Generate ``service/domain/workflow_data.py`` from the vendor's Loyalty v2 document.

    python scripts/gen_workflow_types.py            # rewrite the output
    python scripts/gen_workflow_types.py --check    # exit 1 when it is stale

Input: ``scripts/vendor/loyalties-v2.json``, copied unchanged from Voucherify's
public OpenAPI repository (``documentation/openapi/loyalties-v2.json``, OpenAPI
3.1). Output: the ``data`` Structs of Workflows webhooks (``source.object:
"workflow"``), which a Workflows "Webhook callout" step sends after a Loyalty v2
transaction or activity, and the event type -> Struct mapping:

- a **transaction** type (the enum of ``CardTransaction.type``: ``POINTS_EARNED``
  and 13 more) carries ``{"transaction": CardTransaction}``;
- an **activity** type (``vl.member.created`` and 65 more: the ``type`` enums of
  the eight ``...Activity`` schemas that have a ``data``) carries that activity's
  ``data`` itself, not the activity around it (the vendor's Workflows page).

The type algebra, the leniency rules (every field optional and nullable, unknown
fields ignored, enums as ``str``) and the rendering are those of
``gen_webhook_types.py``, imported from it. The hand-made parts are two tables:

- ``SNAPSHOTS``: where the vendor documents an activity's ``data`` only in prose
  ("always includes a ``program`` snapshot; assignment activities also include
  ..."), the objects it names become typed fields, each with the sentence that
  names it;
- ``QUIRKS``: fields widened where the vendor's examples disagree with its schema
  (the same rule as the webhook generator's table).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

# The sibling generator and the schema conversion both share, found through sys.path.
import gen_webhook_types as base
import schema_types

ROOT = base.ROOT
OUTPUT = ROOT / "service" / "domain" / "workflow_data.py"
SPEC = ROOT / "scripts" / "vendor" / "loyalties-v2.json"
#: The two envelopes of the vendor's Workflows webhook page: samples for ``fanout send``.
VENDOR_EXAMPLES = SPEC.with_name("workflow-webhook-examples.json")
EXAMPLES = OUTPUT.with_name("workflow_examples.json")

#: The transaction schema whose ``type`` enum lists the transaction event types.
TRANSACTION = "CardTransaction"

# (data Struct, JSON field) -> (vendor schema, the vendor's words that name it).
SNAPSHOTS: dict[tuple[str, str], tuple[str, str]] = {
    ("MemberActivityData", "member"): (
        "Member",
        "MemberActivity.data: 'e.g. `member` and `program` objects for member lifecycle "
        "activities'",
    ),
    ("MemberActivityData", "program"): ("Program", "MemberActivity.data, as above"),
    ("ProgramActivityData", "program"): (
        "Program",
        "ProgramActivity: 'The `data` payload always contains the `program` object snapshot'",
    ),
    ("ProgramActivityData", "card_definition"): (
        "CardDefinition",
        "ProgramActivity: assignment activities include the related resource",
    ),
    ("ProgramActivityData", "earning_rule"): ("EarningRuleResponse", "ProgramActivity, as above"),
    ("ProgramActivityData", "reward"): ("RewardResponse", "ProgramActivity, as above"),
    ("ProgramActivityData", "tier_structure"): ("TierStructure", "ProgramActivity, as above"),
    ("ProgramActivityData", "program_card_definition"): (
        "ProgramCardDefinitionAssignment",
        "ProgramActivity: '... and the assignment object'",
    ),
    ("ProgramActivityData", "program_earning_rule"): (
        "ProgramEarningRuleAssignment",
        "ProgramActivity, as above",
    ),
    ("ProgramActivityData", "program_reward"): (
        "ProgramRewardAssignment",
        "ProgramActivity, as above",
    ),
    ("ProgramActivityData", "program_tier_structure"): (
        "ProgramTierStructureAssignment",
        "ProgramActivity, as above",
    ),
    ("CardDefinitionActivityData", "program"): (
        "Program",
        "CardDefinitionActivity.data: assigned/unassigned 'additionally contains `program` and "
        "`program_card_definition` snapshots'",
    ),
    ("CardDefinitionActivityData", "program_card_definition"): (
        "ProgramCardDefinitionAssignment",
        "CardDefinitionActivity.data, as above",
    ),
    ("EarningRuleActivityData", "earning_rule"): (
        "EarningRuleResponse",
        "EarningRuleActivityResponse.data: 'it contains an `earning_rule` snapshot'",
    ),
    ("RewardActivityData", "program"): (
        "Program",
        "RewardActivityData.program: 'Snapshot of the program'",
    ),
    ("RewardActivityData", "program_reward"): (
        "ProgramRewardAssignment",
        "RewardActivityData.program_reward: 'Snapshot of the program-reward assignment'",
    ),
    ("TierStructureActivityData", "program"): (
        "Program",
        "TierStructureActivityData.program: 'Snapshot of the loyalty program'",
    ),
    ("TierStructureActivityData", "program_tier_structure"): (
        "ProgramTierStructureAssignment",
        "TierStructureActivityData.program_tier_structure: 'Snapshot of the "
        "program-to-tier-structure assignment'",
    ),
}

QUIRKS: dict[tuple[str, str], tuple[str, str]] = {
    ("Program", "start_date"): (
        "str",
        "a date (2026-01-01), not a date-time, in the vendor's vl.member.created example",
    ),
    ("Program", "end_date"): (
        "str",
        "the pair of start_date, a date in the vendor's vl.member.created example",
    ),
}


# --- what the document holds ------------------------------------------------------


def activity_families(spec: dict[str, Any]) -> list[tuple[str, list[str]]]:
    """``(activity schema, its activity types)`` for each schema with a ``vl.`` type enum and
    a ``data``, in the document's order."""
    gen = schema_types.Generator(spec, QUIRKS)
    found = []
    for name, schema in gen.schemas.items():
        properties = schema.get("properties", {})
        if "data" not in properties or "type" not in properties:
            continue
        enum = gen.resolve(properties["type"]).get("enum") or []
        types = [value for value in enum if isinstance(value, str) and value.startswith("vl.")]
        if types:
            found.append((name, types))
    return found


def transaction_types(spec: dict[str, Any]) -> list[str]:
    enum: list[str] = spec["components"]["schemas"][TRANSACTION]["properties"]["type"]["enum"]
    return enum


def data_struct_name(family: str) -> str:
    """``MemberActivity`` -> ``MemberActivityData``; ``EarningRuleActivityResponse`` ->
    ``EarningRuleActivityData``."""
    return schema_types.camel(family.removesuffix("Response")) + "Data"


def data_schema(gen: schema_types.Generator, family: str, struct: str) -> dict[str, Any]:
    """The activity's ``data`` schema, with the objects ``SNAPSHOTS`` names as properties."""
    schema = dict(gen.resolve(gen.schemas[family]["properties"]["data"]))
    properties = dict(schema.get("properties", {}))
    for (owner, prop), (target, _) in SNAPSHOTS.items():
        if owner == struct:
            properties[prop] = {"$ref": f"#/components/schemas/{target}"}
    schema["properties"] = properties
    if properties:  # named objects: a Struct, whatever else the keys may be
        schema.pop("additionalProperties", None)
    schema.setdefault("type", "object")
    return schema


# --- rendering --------------------------------------------------------------------

HEADER = '''\
# Generated by scripts/gen_workflow_types.py from the vendor's loyalties-v2.json.
# Do not edit: change the generator (its SNAPSHOTS and QUIRKS tables hold the hand-made parts).
# ruff: noqa: E501 - Struct names are as long as the vendor made them.
"""Typed ``data`` of Voucherify's Workflows webhooks (Loyalty v2), as documented.

Source: ``documentation/openapi/loyalties-v2.json`` of
github.com/voucherifyio/voucherify-openapi (commit 65c33a7a), copied to
``scripts/vendor/``.

A Workflows "Webhook callout" step posts the webhook envelope with
``source.object == "workflow"`` after a Loyalty v2 transaction or activity. A
transaction type (``POINTS_EARNED``, ...) carries ``{"transaction": ...}``
(``CardTransactionData``); an activity type (``vl.member.created``, ...) carries
the activity's own ``data`` (``MemberActivityData``, ...). Every field is
optional and nullable and unknown fields are ignored, as for the webhook data
Structs; where the vendor names an activity's snapshot objects only in prose,
the field carries a comment quoting it.

``BY_TYPE`` maps each documented transaction and activity type to its Struct;
``workflow_data_type`` looks one up.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

import msgspec


class Model(msgspec.Struct, kw_only=True, omit_defaults=True):
    """Base of every generated Struct: absent fields stay absent when re-encoded."""


class WorkflowData(Model):
    """Base of the Workflows webhook ``data`` Structs."""
'''

TRANSACTION_DATA = "CardTransactionData"


def render(spec: dict[str, Any]) -> str:
    gen = schema_types.Generator(spec, QUIRKS)
    by_type: dict[str, str] = {}
    data_names = [TRANSACTION_DATA]
    gen.build_struct(
        TRANSACTION_DATA,
        {
            "type": "object",
            "description": "Data of the card transaction types (POINTS_EARNED, ...)",
            "properties": {"transaction": {"$ref": f"#/components/schemas/{TRANSACTION}"}},
        },
        base="WorkflowData",
    )
    for type_ in transaction_types(spec):
        by_type[type_] = TRANSACTION_DATA
    for family, types in activity_families(spec):
        struct = data_struct_name(family)
        data = gen.schemas[family]["properties"]["data"]
        if "$ref" in data:  # the vendor's own schema: generated under its name
            gen.named[data["$ref"].rsplit("/", 1)[1]] = schema_types.Ref(struct)
        gen.build_struct(struct, data_schema(gen, family, struct), base="WorkflowData")
        prefix = types[0].rsplit(".", 1)[0]
        gen.structs[struct].doc = f"Data of the {prefix}.* activities ({family})."
        data_names.append(struct)
        for type_ in types:
            if type_ in by_type:
                raise SystemExit(f"{type_}: listed by two schemas")
            by_type[type_] = struct
    mark_snapshots(gen)
    unused = set(QUIRKS) - gen.used_quirks
    if unused:
        raise SystemExit(f"QUIRKS entries match no generated field: {sorted(unused)}")

    out = [HEADER]
    same = schema_types.identical(gen.structs)
    order = data_names + sorted(n for n in gen.structs if n not in data_names and n not in same)
    for name in order:
        out.append(render_struct(gen.structs[name], same))
    out.append(render_tables(spec, by_type))
    tables = ["BY_TYPE", "TRANSACTION_TYPES", "workflow_data_type"]
    out.append(base.render_all(["WorkflowData", *order, *tables]))
    return "\n".join(out)


def mark_snapshots(gen: schema_types.Generator) -> None:
    for owner, prop in SNAPSHOTS:
        struct = gen.structs.get(owner)
        if struct is None or prop not in struct.fields:
            raise SystemExit(f"SNAPSHOTS entry {(owner, prop)} matches no generated field")


def render_struct(struct: schema_types.StructDef, same: dict[str, str]) -> str:
    """As the webhook generator renders it, with each snapshot field's evidence above it."""
    text = base.render_struct(struct, same)
    for (owner, prop), (_, evidence) in SNAPSHOTS.items():
        if owner == struct.name:
            line = next(ln for ln in text.splitlines() if ln.startswith(f"    {prop}: "))
            text = text.replace(line, f"    # Named in prose: {evidence}.\n{line}", 1)
    return text


def render_tables(spec: dict[str, Any], by_type: dict[str, str]) -> str:
    transactions = transaction_types(spec)
    lines = [
        "\n\n#: Workflows event type -> the Struct of its ``data``: the card transaction types,",
        "#: then each activity schema's types, in the vendor's order.",
        "BY_TYPE: dict[str, type[WorkflowData]] = {",
    ]
    lines += [f'    "{type_}": {struct},' for type_, struct in by_type.items()]
    lines += [
        "}",
        "",
        "#: The transaction types (``data.transaction``); the other types are activities.",
        "TRANSACTION_TYPES: frozenset[str] = frozenset(",
        "    {",
    ]
    lines += [f'        "{type_}",' for type_ in transactions]
    lines += [
        "    }",
        ")",
        "",
        "",
        "def workflow_data_type(event_type: str) -> type[WorkflowData] | None:",
        '    """The ``data`` Struct of a Workflows event type; None when the vendor documents',
        '    none (such an event is drift: published with ``schema_valid`` false)."""',
        "    return BY_TYPE.get(event_type)",
        "",
    ]
    return "\n".join(lines)


# --- entry point ------------------------------------------------------------------


def generate(spec_path: Path) -> dict[str, str]:
    """File name (in ``service/domain``) -> content."""
    spec = json.loads(spec_path.read_text(encoding="utf-8"))
    return {OUTPUT.name: base.ruff_format(render(spec)), EXAMPLES.name: render_examples()}


def render_examples() -> str:
    """The vendor's Workflows envelopes (``fanout send --sample POINTS_EARNED``)."""
    document = {
        "generated": "by scripts/gen_workflow_types.py from the vendor's Workflows webhook "
        "page's examples; do not edit",
        "examples": json.loads(VENDOR_EXAMPLES.read_text(encoding="utf-8")),
    }
    return json.dumps(document, indent=1, ensure_ascii=False) + "\n"


def main(argv: list[str] | None = None) -> int:
    return base.run(__doc__, generate, SPEC, "loyalties-v2.json", argv)


if __name__ == "__main__":
    sys.exit(main())
