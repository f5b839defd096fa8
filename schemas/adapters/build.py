"""Shared by the adapters: validate canonical fields into a model, naming the sender's field on error."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import ValidationError

from spendwatch.schemas.errors import ParseError
from spendwatch.schemas.event import GatewayEvent

MAX_TAGS = 64


def build_event(fields: dict[str, Any], *, gateway: str, field_map: Mapping[str, str] | None = None) -> GatewayEvent:
    """``GatewayEvent.model_validate(fields)``, turning errors into a :class:`ParseError` that names the
    field as the sender spelt it (``field_map`` maps canonical names to source paths)."""
    try:
        return GatewayEvent.model_validate(fields)
    except ValidationError as exc:
        raise ParseError.from_validation(exc, gateway=gateway, field_map=dict(field_map or {})) from None


def tag_list(value: Any, field: str) -> tuple[str, ...]:
    """Tags from a list of strings, a comma-separated string or a ``{name: value}`` mapping."""
    if value is None or value == "":
        return ()
    if isinstance(value, str):
        items: list[Any] = [t for t in value.split(",")]
    elif isinstance(value, list | tuple):
        items = list(value)
    elif isinstance(value, Mapping):
        items = [f"{k}:{v}" for k, v in value.items()]
    else:
        raise ParseError("validation", f"tags must be a list of strings, got {type(value).__name__}", field)
    if len(items) > MAX_TAGS:
        raise ParseError("too_large", f"{len(items)} tags, at most {MAX_TAGS} allowed", field)
    out: list[str] = []
    for i, item in enumerate(items):
        if isinstance(item, bool) or not isinstance(item, str | int | float):
            raise ParseError("validation", f"a tag must be a string, got {type(item).__name__}", f"{field}[{i}]")
        tag = str(item).strip()
        if tag and tag not in out:
            out.append(tag)
    return tuple(out)
