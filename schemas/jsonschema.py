"""Generate the published JSON Schemas from the models.

``python -m spendwatch.schemas.jsonschema`` writes ``schemas/*.schema.json``; a test fails when
a committed file differs from what the models generate. The schemas describe what a producer
may send (pydantic's *validation* mode: money as a number or a decimal string).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from pydantic import BaseModel

from spendwatch.schemas.alert import Alert
from spendwatch.schemas.dead_letter import DeadLetter
from spendwatch.schemas.event import GatewayEvent
from spendwatch.schemas.outcome import OutcomeEvent

SCHEMA_DIR = Path(__file__).resolve().parent
BASE_ID = "https://spendwatch.dev/schemas/"

#: file name -> model
PUBLISHED: dict[str, type[BaseModel]] = {
    "gateway_event.schema.json": GatewayEvent,
    "outcome_event.schema.json": OutcomeEvent,
    "alert.schema.json": Alert,
    "dead_letter.schema.json": DeadLetter,
}


def schema_for(name: str, model: type[BaseModel]) -> dict:
    schema = model.model_json_schema(mode="validation")
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", "$id": BASE_ID + name, **schema}


def render(name: str, model: type[BaseModel]) -> str:
    return json.dumps(schema_for(name, model), indent=2, sort_keys=False) + "\n"


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    stale = []
    for name, model in PUBLISHED.items():
        path = SCHEMA_DIR / name
        text = render(name, model)
        if argv[:1] == ["--check"]:
            if not path.exists() or path.read_text(encoding="utf-8") != text:
                stale.append(name)
        else:
            path.write_text(text, encoding="utf-8")
            print(f"wrote {path}")
    if stale:
        print(f"stale: {', '.join(stale)}; run python -m spendwatch.schemas.jsonschema", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
