"""OpenAPI schemas to msgspec Struct definitions: what both generators share.

``gen_webhook_types.py`` (the webhook ``data`` Structs) and
``gen_workflow_types.py`` (the Workflows ones) read the vendor's schemas through
one ``Generator``: a small type algebra (``Prim``, ``Arr``, ``Dict``, ``Ref``,
``Union``), ``StructDef`` per object schema, ``union`` widening what msgspec
cannot hold, and ``identical`` to generate a repeated inline object once. The
leniency rules are in ``gen_webhook_types.py``'s docstring; the fields widened
from the vendor's examples (``quirks``) are each generator's own table.
"""

from __future__ import annotations

import keyword
import re
from dataclasses import dataclass, field
from typing import Any

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
        quirks: dict[tuple[str, str], tuple[str, str]],
    ) -> None:
        self.spec = spec
        self.quirks = quirks
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
