"""Regenerate ``openai-components.json`` from OpenAI's OpenAPI spec.

Usage::

    python tests/spec/extract_openai_components.py path/to/openai-openapi.yaml

Copies the response schemas pampero must match, and every schema they reference, verbatim
(no OpenAPI-to-JSON-Schema conversion here: ``validate.py`` does that when loading, so the
committed file stays a faithful excerpt of OpenAI's text). The spec is MIT-licensed; see
``LICENSE-openai-openapi`` next to this file.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

ROOTS = (
    "CreateChatCompletionResponse",
    "CreateChatCompletionStreamResponse",
    "CreateCompletionResponse",
    "ListModelsResponse",
    "Model",
    "ErrorResponse",
    "Response",
    "ResponseStreamEvent",
    "ResponseItemList",
)
REF_PREFIX = "#/components/schemas/"
OUTPUT = Path(__file__).with_name("openai-components.json")


def _refs(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref" and isinstance(value, str):
                yield value
            else:
                yield from _refs(value)
    elif isinstance(node, list):
        for item in node:
            yield from _refs(item)


def closure(schemas: dict[str, Any], roots: tuple[str, ...]) -> dict[str, Any]:
    """``roots`` and every schema they reference, transitively, sorted by name."""
    seen: set[str] = set()
    pending = list(roots)
    while pending:
        name = pending.pop()
        if name in seen:
            continue
        seen.add(name)
        for ref in _refs(schemas[name]):
            if not ref.startswith(REF_PREFIX):
                raise ValueError(f"{name} references {ref}, outside components/schemas")
            pending.append(ref.removeprefix(REF_PREFIX))
    return {name: schemas[name] for name in sorted(seen)}


def extract(spec_path: Path) -> dict[str, Any]:
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    with spec_path.open("rb") as handle:
        spec = yaml.load(handle, Loader=loader)
    return {
        "source": "OpenAI OpenAPI spec (github.com/openai/openai-openapi), MIT licence",
        "openapi": spec["openapi"],
        "spec_version": spec["info"]["version"],
        "roots": list(ROOTS),
        "components": {"schemas": closure(spec["components"]["schemas"], ROOTS)},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("spec", type=Path, help="openai-openapi.yaml")
    parser.add_argument("--output", type=Path, default=OUTPUT)
    args = parser.parse_args()
    document = extract(args.spec)
    args.output.write_text(json.dumps(document, indent=1, ensure_ascii=False) + "\n")
    count = len(document["components"]["schemas"])
    print(f"wrote {count} schemas to {args.output}")


if __name__ == "__main__":
    main()
