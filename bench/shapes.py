"""Pydantic v2 models of the same shapes as the service's msgspec Structs, for bench.decode.

Built from the Structs themselves (``msgspec.inspect``), so both sides validate
exactly the same fields: every webhook ``data`` Struct of ``domain.webhook_data``
becomes a pydantic model with the same field names, types, optionality and
nullability, unknown fields ignored (pydantic's default, msgspec's here too).
"""

from __future__ import annotations

import datetime
import functools
from typing import Any, Literal, Union

import msgspec
import msgspec.inspect as mi
from pydantic import BaseModel, create_model


def annotation(info: mi.Type) -> Any:
    """The pydantic annotation of one msgspec type."""
    match info:
        case mi.StrType():
            return str
        case mi.IntType():
            return int
        case mi.FloatType():
            return float
        case mi.BoolType():
            return bool
        case mi.NoneType():
            return type(None)
        case mi.DateTimeType():
            return datetime.datetime
        case mi.DateType():
            return datetime.date
        case mi.AnyType():
            return Any
        case mi.LiteralType(values=values):
            return Literal[values]
        case mi.ListType(item_type=item):
            return list[annotation(item)]  # type: ignore[misc]
        case mi.DictType(key_type=key, value_type=value):
            return dict[annotation(key), annotation(value)]  # type: ignore[misc]
        case mi.StructType(cls=cls):
            return model(cls)
        case mi.UnionType(types=types):
            return Union[tuple(annotation(t) for t in types)]  # noqa: UP007
    raise TypeError(f"no pydantic equivalent for {info!r}")


@functools.cache
def model(struct: type[msgspec.Struct]) -> type[BaseModel]:
    """The pydantic model of ``struct`` (nested Structs become nested models)."""
    info = mi.type_info(struct)
    assert isinstance(info, mi.StructType)
    fields: dict[str, Any] = {}
    for field in info.fields:
        default = None if field.default is mi.NODEFAULT else field.default
        fields[field.name] = (annotation(field.type), default)
    return create_model(struct.__name__, **fields)
