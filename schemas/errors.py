"""Typed parse errors: every rejected message says which field was wrong and why.

A :class:`ParseError` is the only exception :func:`spendwatch.schemas.adapters.parse_message`
raises. Stream workers turn it into a :class:`~spendwatch.schemas.dead_letter.DeadLetter`
with :meth:`ParseError.to_dead_letter` and carry on with the next message.
"""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from .dead_letter import DeadLetter
from .redact import redact_bytes

#: The machine-readable classes of parse error (``ParseError.error_type``).
ERROR_TYPES = (
    "invalid_json",  # not UTF-8 / not JSON / JSON with NaN or Infinity
    "validation",  # JSON, but a field has a wrong type, a negative or absurd value, or is missing
    "unknown_format",  # valid JSON no adapter recognises
    "too_large",  # the message, or a list in it, is bigger than the configured cap
    "missing_attribution",  # neither an API key nor a user: spend nobody can own
    "out_of_range",  # event_time outside the window live ingestion accepts (schemas/event_window.py)
)


class ParseError(ValueError):
    """A message could not be turned into canonical records.

    Parameters
    ----------
    error_type
        Machine-readable class, one of :data:`ERROR_TYPES`.
    reason
        What was wrong, for a human.
    field
        Dotted path of the offending field in the *original* message (``metadata.usage_object.prompt_tokens``),
        or ``None`` when the message as a whole is at fault.
    gateway
        The format the message was detected as, when known.

    Examples
    --------
    >>> err = ParseError("validation", "must be >= 0, got -3", field="usage.prompt_tokens")
    >>> str(err)
    'validation at usage.prompt_tokens: must be >= 0, got -3'
    >>> err.to_dead_letter(b'{}', source_topic="raw").field
    'usage.prompt_tokens'
    """

    def __init__(self, error_type: str, reason: str, field: str | None = None, gateway: str | None = None) -> None:
        self.error_type = error_type
        self.reason = reason
        self.field = field
        self.gateway = gateway
        super().__init__(str(self))

    def __str__(self) -> str:
        where = f" at {self.field}" if self.field else ""
        fmt = f" ({self.gateway})" if self.gateway else ""
        return f"{self.error_type}{fmt}{where}: {self.reason}"

    def __reduce__(self) -> tuple[Any, ...]:
        return (ParseError, (self.error_type, self.reason, self.field, self.gateway))

    def with_prefix(self, prefix: str) -> ParseError:
        """The same error with ``prefix`` prepended to its field path (for nested or batched messages)."""
        if not prefix:
            return self
        field = f"{prefix}.{self.field}" if self.field and not self.field.startswith("[") else (
            f"{prefix}{self.field}" if self.field else prefix
        )
        return ParseError(self.error_type, self.reason, field, self.gateway)

    def to_dead_letter(self, raw: bytes | str, **source: Any) -> DeadLetter:
        """A dead letter carrying this error and the original bytes, prompt/response text redacted.

        ``source`` is passed on to :class:`DeadLetter`: ``source_topic``, ``source_partition``,
        ``source_offset``, ``stage``.
        """
        if isinstance(raw, str):
            raw = raw.encode("utf-8", "replace")
        stored, truncated = redact_bytes(bytes(raw))
        reason = self.reason + (f" [original truncated to {len(stored)} bytes]" if truncated else "")
        return DeadLetter.for_bytes(
            stored, reason=reason, error_type=self.error_type, field=self.field, **source
        )

    @classmethod
    def from_validation(
        cls, exc: ValidationError, *, gateway: str | None = None, field_map: dict[str, str] | None = None
    ) -> ParseError:
        """Turn a pydantic error on a canonical model into a ParseError naming the first bad field.

        ``field_map`` maps canonical field names back to where they came from in the original
        message (``input_tokens`` -> ``usage.prompt_tokens``) so the error names what the sender sent.
        """
        errors = exc.errors(include_url=False, include_context=False, include_input=False)
        if not errors:  # pragma: no cover - pydantic always reports at least one
            return cls("validation", str(exc), gateway=gateway)
        first = errors[0]
        loc = [str(p) for p in first.get("loc", ())]
        field = ".".join(loc) or None
        if field and field_map and loc[0] in field_map:
            field = ".".join([field_map[loc[0]], *loc[1:]])
        reason = first.get("msg", "invalid")
        if reason.startswith("Value error, "):
            reason = reason[len("Value error, "):]
        if first.get("type") == "missing":
            reason = "required field is missing"
        if "api_key_hash and user are both missing" in reason:
            return cls("missing_attribution", reason, (field_map or {}).get("api_key_hash", "api_key_hash"), gateway)
        more = len(errors) - 1
        if more:
            reason = f"{reason} (and {more} more error{'s' if more > 1 else ''})"
        return cls("validation", reason, field, gateway)
