# ruff: noqa: E501  (the seed documents' lines are kept as they are)
"""The seed documents' code examples, verbatim (only the outer Markdown indentation removed).

``test_seeds.py`` swaps the host and the key at run time. Two snippets need repairs that a
``.replace`` cannot express, and say so where they are: seed 002's SDK loop, whose document
lost its indentation and never shows the ``client`` it uses, and seed 003's Python, whose
document has ``[`` where ``(`` belongs (``SEED_003_REPAIRS``, applied by ``repaired``).
"""

from __future__ import annotations

SEED_003_REPAIRS = (
    ("OpenAI[", "OpenAI("),
    ("create[", "create("),
    ("print[", "print("),
)


def repaired(code: str) -> str:
    for broken, fixed in SEED_003_REPAIRS:
        code = code.replace(broken, fixed)
    return code


SEED_001_PYTHON = r"""import requests

GS_API_KEY= "tu_clave_api"
API_URL = "https://api.gradientesur.com/functions/v1/chat/completions"
headers = {"Authorization": "Bearer " + GS_API_KEY}

data = {
    "model": "Qwen/Qwen3-1.7B",
    "messages": [{"role": "user", "content": "Hola, cómo estás?"}],
    "max_tokens": 200
}

response = requests.post(API_URL, headers=headers, json=data)
print(response.json())
"""

SEED_001_JAVASCRIPT = r"""const GS_API_KEY = "tu_clave_api";
const API_URL = 'https://api.gradientesur.com/functions/v1/chat/completions';
fetch(API_URL, {
    method: 'POST',
    headers: {
        'Authorization': 'Bearer ' + GS_API_KEY,
        'Content-Type': 'application/json'
    },
    body: JSON.stringify({
        model: 'Qwen/Qwen3-1.7B',
        messages: [{ role: 'user', content: 'Hola, cómo estás?' }],
        max_tokens: 200
    })
})
.then(res => res.json())
.then(data => {
    console.log("Full response:", JSON.stringify(data, null, 2));
    console.log("\nAI response:", data.choices[0].message.content);
});
"""

SEED_001_CURL = r"""curl -X POST https://api.gradientesur.com/functions/v1/chat/completions \
  -H "Authorization: Bearer tu_clave_api" \
  -H "Content-Type: application/json" \
  -d '{"model": "Qwen/Qwen3-1.7B", "messages": [{"role": "user", "content": "Hola, cómo estás?"}], "max_tokens": 200}'
"""

SEED_001_GUIDED_PYTHON = r"""import requests

GS_API_KEY = "tu_clave_api"
API_URL = "https://api.gradientesur.com/functions/v1/chat/completions"
headers = {"Authorization": "Bearer " + GS_API_KEY}

data = {
    "model": "Qwen/Qwen3-1.7B",
    "messages": [{"role": "user", "content": "Hola, cómo estás?"}],
    "max_tokens": 200,
    "top_k": 20,
    "repetition_penalty": 1.1,
    "guided_regex": ".*\\?$"
}

response = requests.post(API_URL, headers=headers, json=data)
print(response.json())
"""

SEED_001_GUIDED_JAVASCRIPT = r"""const GS_API_KEY = "tu_clave_api";
const API_URL = 'https://api.gradientesur.com/functions/v1/chat/completions';
fetch(API_URL, {
    method: 'POST',
    headers: {
        'Authorization': 'Bearer ' + GS_API_KEY,
        'Content-Type': 'application/json'
    },
    body: JSON.stringify({
        model: 'Qwen/Qwen3-1.7B',
        messages: [{ role: 'user', content: 'Hola, cómo estás?' }],
        max_tokens: 200,
        top_k: 20,
        repetition_penalty: 1.1,
        guided_regex: '.*\\?$'
    })
})
.then(res => res.json())
.then(data => console.log(data));
"""

SEED_001_GUIDED_CURL = r"""curl -X POST https://api.gradientesur.com/functions/v1/chat/completions \
  -H "Authorization: Bearer tu_clave_api" \
  -H "Content-Type: application/json" \
  -d '{"model": "Qwen/Qwen3-1.7B", "messages": [{"role": "user", "content": "Hola, cómo estás?"}], "max_tokens": 200, "top_k": 20, "repetition_penalty": 1.1, "guided_regex": ".*\\?$"}'
"""

SEED_002_CURL = r"""curl https://api.ofox.ai/v1/chat/completions \
-H "Authorization: Bearer $OFOX_API_KEY" \
-H "Content-Type: application/json" \
-d '{
"model": "openai/gpt-4o",
"messages": [
{"role": "system", "content": "Eres un asistente útil."},
{"role": "user", "content": "Explica qué es un API Gateway"}
],
"temperature": 0.7
}'
"""

SEED_003_CURL_BASIC = r"""curl https://api.x.ai/v1/chat/completions \
  -H "Content-Type: application/json" \
  -H "Authorization: Bearer $XAI_API_KEY" \
  -d '{
      "messages": [
        {
          "role": "system",
          "content": "You are Grok, a chatbot inspired by the Hitchhikers Guide to the Galaxy."
        },
        {
          "role": "user",
          "content": "What is the answer to life and universe?"
        }
      ],
      "model": "grok-beta",
      "stream": false,
      "temperature": 0
    }'
"""

SEED_003_SDK_BASIC = r"""import os
from openai import OpenAI

token = os.environ["GITHUB_TOKEN"]
endpoint = "https://models.inference.ai.azure.com"
model_name = "gpt-4o-mini"

client = OpenAI[
    base_url=endpoint,
    api_key=token,
)

response = client.chat.completions.create[
    messages=[
        {
            "role": "system",
            "content": "You are a helpful assistant.",
        },
        {
            "role": "user",
            "content": "What is the capital of France?",
        }
    ],
    temperature=1.0,
    top_p=1.0,
    max_tokens=1000,
    model=model_name
)

print[response.choices[0].message.content)
"""

SEED_003_CURL_MULTI_TURN = r"""curl -X POST "https://models.inference.ai.azure.com/chat/completions" \
    -H "Content-Type: application/json" \
    -H "Authorization: Bearer $GITHUB_TOKEN" \
    -d '{
        "messages": [
            {
                "role": "system",
                "content": "You are a helpful assistant."
            },
            {
                "role": "user",
                "content": "What is the capital of France?"
            },
            {
                "role": "assistant",
                "content": "The capital of France is Paris."
            },
            {
                "role": "user",
                "content": "What about Spain?"
            }
        ],
        "model": "gpt-4o"
    }'
"""

SEED_003_SDK_MULTI_TURN = r"""import os
from openai import OpenAI

token = os.environ["GITHUB_TOKEN"]
endpoint = "https://models.inference.ai.azure.com"
model_name = "gpt-4o"

client = OpenAI[
    base_url=endpoint,
    api_key=token,
)

response = client.chat.completions.create[
    messages=[
        {
            "role": "system",
            "content": "You are a helpful assistant.",
        },
        {
            "role": "user",
            "content": "What is the capital of France?",
        },
        {
            "role": "assistant",
            "content": "The capital of France is Paris.",
        },
        {
            "role": "user",
            "content": "What about Spain?",
        }
    ],
    model=model_name,
)

print[response.choices[0].message.content)
"""

SEED_003_CURL_STREAM = r"""curl -X POST "https://models.inference.ai.azure.com/chat/completions" \
    -H "Content-Type: application/json" \
    -H "Authorization: Bearer $GITHUB_TOKEN" \
    -d '{
        "messages": [
            {
                "role": "system",
                "content": "You are a helpful assistant."
            },
            {
                "role": "user",
                "content": "Give me 5 good reasons why I should exercise every day."
            }
        ],
        "stream": true,
        "model": "gpt-4o"
    }'
"""

SEED_003_SDK_STREAM = r"""import os
from openai import OpenAI

token = os.environ["GITHUB_TOKEN"]
endpoint = "https://models.inference.ai.azure.com"
model_name = "gpt-4o"

client = OpenAI[
    base_url=endpoint,
    api_key=token,
)

response = client.chat.completions.create[
    messages=[
        {
            "role": "system",
            "content": "You are a helpful assistant.",
        },
        {
            "role": "user",
            "content": "Give me 5 good reasons why I should exercise every day.",
        }
    ],
    model=model_name,
    stream=True
)

for update in response:
    if update.choices[0].delta.content:
        print[update.choices[0].delta.content, end="")
"""

# Seed 002 shows only this loop, unindented, with no client; the indentation is restored and
# the client set-up (the document's base URL, the key from the environment) is added.
SEED_002_SDK_STREAM = r"""import os

from openai import OpenAI

client = OpenAI(base_url="https://api.ofox.ai/v1", api_key=os.environ["OFOX_API_KEY"])

stream = client.chat.completions.create(
    model="openai/gpt-4o",
    messages=[{"role": "user", "content": "Cuéntame una historia"}],
    stream=True
)
for chunk in stream:
    content = chunk.choices[0].delta.content
    if content:
        print(content, end="", flush=True)
"""

# name -> (runner, code): python -c, node -e, or bash -c for the curl commands.
SNIPPETS: dict[str, tuple[str, str]] = {
    "001-python": ("python", SEED_001_PYTHON),
    "001-javascript": ("node", SEED_001_JAVASCRIPT),
    "001-curl": ("curl", SEED_001_CURL),
    "001-guided-python": ("python", SEED_001_GUIDED_PYTHON),
    "001-guided-javascript": ("node", SEED_001_GUIDED_JAVASCRIPT),
    "001-guided-curl": ("curl", SEED_001_GUIDED_CURL),
    "002-curl": ("curl", SEED_002_CURL),
    "002-sdk-stream": ("python", SEED_002_SDK_STREAM),
    "003-curl-basic": ("curl", SEED_003_CURL_BASIC),
    "003-sdk-basic": ("python", repaired(SEED_003_SDK_BASIC)),
    "003-curl-multi-turn": ("curl", SEED_003_CURL_MULTI_TURN),
    "003-sdk-multi-turn": ("python", repaired(SEED_003_SDK_MULTI_TURN)),
    "003-curl-stream": ("curl", SEED_003_CURL_STREAM),
    "003-sdk-stream": ("python", repaired(SEED_003_SDK_STREAM)),
}
