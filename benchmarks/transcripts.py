"""Record the exact bytes a running server answers to a fixed set of requests.

For refactors that must not change behaviour: record before, record after, diff. Ids and
timestamps, which differ on every request, are replaced by placeholders; everything else (SSE
framing, chunk order and contents, usage, headers pampero sets) is kept byte for byte.

    python benchmarks/transcripts.py --url http://127.0.0.1:8000 > before.txt
    ...change the code, restart the server...
    python benchmarks/transcripts.py --url http://127.0.0.1:8000 > after.txt
    diff before.txt after.txt
"""

from __future__ import annotations

import argparse
import re
import sys
from typing import Any

import httpx

MODEL = "Qwen/Qwen2.5-Coder-0.5B-Instruct"
WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather for a city",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
        },
    },
}


def _chat(content: str, **fields: Any) -> tuple[str, dict[str, Any]]:
    body = {
        "model": MODEL,
        "messages": [{"role": "user", "content": content}],
        "temperature": 0,
        "max_tokens": 24,
        **fields,
    }
    return "/v1/chat/completions", body


REQUESTS: list[tuple[str, dict[str, Any]]] = [
    _chat("Say hello in Spanish."),
    _chat("Say hello in Spanish.", stream=True, stream_options={"include_usage": True}),
    _chat(
        "Count to five.", stream=True, n=2, seed=7, temperature=0.8, logprobs=True, top_logprobs=2
    ),
    _chat("What is the weather in Paris?", tools=[WEATHER], stream=True),
    _chat("What is the weather in Paris?", tools=[WEATHER], tool_choice="required"),
    _chat(
        "Give me a JSON object with a name.", stream=True, response_format={"type": "json_object"}
    ),
    _chat("Hi", stream=True, user="someone", unknown_field=1, max_tokens=4),
    _chat("Hi", messages=[{"role": "user", "content": 5}]),
    (
        "/v1/completions",
        {
            "model": MODEL,
            "prompt": ["def add(a, b):", "# a haiku"],
            "max_tokens": 12,
            "temperature": 0,
            "stream": True,
            "stream_options": {"include_usage": True},
        },
    ),
    (
        "/v1/completions",
        {
            "model": MODEL,
            "prompt": "def add(a, b):",
            "max_tokens": 12,
            "temperature": 0,
            "echo": True,
            "logprobs": 1,
        },
    ),
]

_VOLATILE = [
    (re.compile(rb'"id":"(chatcmpl|cmpl|call|chatcmpl-tool)-?[0-9a-zA-Z_-]+"'), rb'"id":"<id>"'),
    (re.compile(rb'"created":\d+'), rb'"created":0'),
    (re.compile(rb'"id":"[0-9a-zA-Z_-]{9,}"'), rb'"id":"<id>"'),
]
_HEADERS = ("content-type", "x-pampero-ignored-params", "retry-after")


def _normalise(raw: bytes) -> bytes:
    for pattern, replacement in _VOLATILE:
        raw = pattern.sub(replacement, raw)
    return raw


def record(url: str) -> str:
    lines: list[str] = []
    with httpx.Client(base_url=url, timeout=300) as client:
        for path, body in REQUESTS:
            response = client.post(path, json=body)
            lines.append(f"### POST {path} {body}")
            lines.append(f"status {response.status_code}")
            for name in _HEADERS:
                if name in response.headers:
                    lines.append(f"{name}: {response.headers[name]}")
            lines.append(_normalise(response.content).decode("utf-8", "replace"))
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default="http://127.0.0.1:8000")
    args = parser.parse_args()
    sys.stdout.write(record(args.url))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
