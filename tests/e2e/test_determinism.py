"""Determinism, the reliability matrix's row: what pampero guarantees and what it measures.

With ``--deterministic`` (one sequence decoded at a time, no prefix cache, no speculation), a
greedy or seeded request's answer depends on the request alone: the same alone and beside other
requests, streamed and not, first sent and sent again. Batching changes llama.cpp's kernels
and so the last bits of the logits: even without the prefix cache (``exact_server``), an
answer decoded beside others can flip a near-tie. On the default server a prompt partly reused
from KV computed in another batch shape can too: the last test measures how often over a few
prompts and only requires the first words to agree (docs/security.md has the figures).
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.e2e.harness import Api

pytestmark = pytest.mark.e2e

PROMPTS = [
    "Write a haiku about the sea.",
    "List four prime numbers and explain why they are prime.",
    "Describe a cat in two sentences.",
]
OTHERS = ["Count to ten.", "Name three colours.", "What is the capital of France?"]


def text(api, prompt: str, **fields) -> str:
    body = api.chat(prompt, max_tokens=32, **fields)
    return body["choices"][0]["message"]["content"]


def beside_others(api, prompt: str, **fields) -> str:
    with ThreadPoolExecutor(max_workers=4) as pool:
        noise = [pool.submit(text, api, other, temperature=0.8) for other in OTHERS]
        answer = pool.submit(text, api, prompt, **fields)
        for future in noise:
            future.result()
        return answer.result()


@pytest.fixture(scope="module")
def deterministic_api(launch):
    with launch("--deterministic") as server:
        client = server.api()
        yield client
        client.close()


@pytest.mark.parametrize("fields", [{"temperature": 0}, {"temperature": 0.9, "seed": 11}])
def test_deterministic_mode_answers_the_same_alone_batched_streamed_and_repeated(
    deterministic_api: Api, fields
):
    api = deterministic_api
    for prompt in PROMPTS:
        alone = text(api, prompt, **fields)
        assert text(api, prompt, **fields) == alone  # sent again
        assert beside_others(api, prompt, **fields) == alone  # queued beside others
        assert api.stream_chat(prompt, max_tokens=32, **fields).texts()[0] == alone


def test_the_default_server_starts_every_repeat_the_same(api):
    differing = 0
    for prompt in PROMPTS:
        first = text(api, prompt, temperature=0)
        again = text(api, prompt, temperature=0)  # its prefix is now cached
        differing += again != first
        assert again.split()[:3] == first.split()[:3], (first, again)
    print(f"greedy repeats differing after a cache hit: {differing}/{len(PROMPTS)}")
