# ruff: noqa: E501, W291  (the seed documents' lines are kept as they are, trailing space too)

"""Seed documents 000 and 004's vision examples, verbatim (only the outer Markdown indentation
removed).

``test_serve_*.py`` (through ``serve_contract.py``) swap, at run time, only what cannot work here:
the API host and key, the model id (the seeds name hosted models; here it is the tiny random
Qwen2-VL), the image URLs and the local image path. The seeds' image hosts (i.imgur.com,
aliyuncs.com) are unreachable from the test machine, as are model hubs, so their URLs become the
loopback image host's, which serves stand-ins under the same file names.
"""

from __future__ import annotations

SEED_000_URL_PYTHON = r"""import requests

SURUS_API_KEY = "tu_clave_api"
API_URL = "https://api.surus.dev/functions/v1/chat/completions"
headers = {"Authorization": "Bearer " + SURUS_API_KEY}

data = {
    "model": "OpenGVLab/InternVL3-2B",
    "messages": [
        {"role": "user", "content": [
            {"type": "text", "text": "Qué hay en esta imagen?"},
            {"type": "image_url", "image_url": {"url": "https://i.imgur.com/IqAOn4t.jpeg"}}
        ]}
    ],
    "max_tokens": 50
}

response = requests.post(API_URL, headers=headers, json=data)
print(response.json())
"""


SEED_000_URL_JAVASCRIPT = r"""const SURUS_API_KEY = "tu_clave_api";
const API_URL = 'https://api.surus.dev/functions/v1/chat/completions';
fetch(API_URL, {
  method: 'POST',
  headers: {
    'Authorization': 'Bearer ' + SURUS_API_KEY,
    'Content-Type': 'application/json'
  },
  body: JSON.stringify({
    model: 'OpenGVLab/InternVL3-2B',
    messages: [
      { role: 'user', content: [
        { type: 'text', text: 'Qué hay en esta imagen?' },
        { type: 'image_url', image_url: { url: 'https://i.imgur.com/IqAOn4t.jpeg' } }
      ] }
    ],
    max_tokens: 50
  })
})
.then(res => res.json())
.then(data => console.log(data));
"""


SEED_000_URL_CURL = r"""curl -X POST https://api.surus.dev/functions/v1/chat/completions \
  -H "Authorization: Bearer tu_clave_api" \
  -H "Content-Type: application/json" \
  -d '{"model": "OpenGVLab/InternVL3-2B", "messages": [{"role": "user", "content": [{"type": "text", "text": "Qué hay en esta imagen?"}, {"type": "image_url", "image_url": {"url": "https://i.imgur.com/IqAOn4t.jpeg"}}]}], "max_tokens": 50}'
"""


SEED_000_GUIDED_PYTHON = r"""import requests

SURUS_API_KEY = "tu_clave_api"
API_URL = "https://api.surus.dev/functions/v1/chat/completions"
headers = {"Authorization": "Bearer " + SURUS_API_KEY}

data = {
    "model": "OpenGVLab/InternVL3-2B",
    "messages": [
        {"role": "user", "content": [
            {"type": "text", "text": "Describe la imagen."},
            {"type": "image_url", "image_url": {"url": "https://i.imgur.com/IqAOn4t.jpeg"}}
        ]}
    ],
    "max_tokens": 50,
    "top_k": 10,
    "guided_choice": ["Es un perro.", "Es un gato."]
}

response = requests.post(API_URL, headers=headers, json=data)
print(response.json())
"""


SEED_000_GUIDED_JAVASCRIPT = r"""const SURUS_API_KEY = "tu_clave_api";
const API_URL = 'https://api.surus.dev/functions/v1/chat/completions';
fetch(API_URL, {
method: 'POST',
headers: {
    'Authorization': 'Bearer ' + SURUS_API_KEY,
    'Content-Type': 'application/json'
},
body: JSON.stringify({
    model: 'OpenGVLab/InternVL3-2B',
    messages: [
    { role: 'user', content: [
        { type: 'text', text: 'Describe la imagen.' },
        { type: 'image_url', image_url: { url: 'https://i.imgur.com/IqAOn4t.jpeg' } }
    ]}
    ],
    max_tokens: 50,
    top_k: 10,
    guided_choice: ["Es un perro.", "Es un gato."]
})
})
.then(res => res.json())
.then(data => console.log(data));
"""


SEED_000_GUIDED_CURL = r"""curl -X POST https://api.surus.dev/functions/v1/chat/completions \
-H "Authorization: Bearer tu_clave_api" \
-H "Content-Type: application/json" \
-d '{"model": "OpenGVLab/InternVL3-2B", "messages": [{"role": "user", "content": [{"type": "text", "text": "Describe la imagen."}, {"type": "image_url", "image_url": {"url": "https://i.imgur.com/IqAOn4t.jpeg"}}]}], "max_tokens": 50, "top_k": 10, "guided_choice": ["Es un perro.", "Es un gato."]}'
"""


SEED_000_BASE64_PYTHON = r"""import base64
import requests

# Codificar imagen local a base64
def encode_image(image_path):
    with open(image_path, "rb") as image_file:
        return base64.b64encode(image_file.read()).decode('utf-8')

SURUS_API_KEY = "tu_clave_api"
API_URL = "https://api.surus.dev/functions/v1/chat/completions"
headers = {"Authorization": "Bearer " + SURUS_API_KEY}

# Codificar la imagen
base64_image = encode_image("ruta/a/tu/imagen.jpg")

data = {
    "model": "OpenGVLab/InternVL3-2B",
    "messages": [
        {"role": "user", "content": [
            {"type": "text", "text": "Qué hay en esta imagen?"},
            {"type": "image_url", "image_url": {"url": f"data:image/jpeg;base64,{base64_image}"}}
        ]}
    ],
    "max_tokens": 50
}

response = requests.post(API_URL, headers=headers, json=data)
print(response.json())
"""


SEED_000_BASE64_JAVASCRIPT = r"""const fs = require('fs');

// Codificar imagen local a base64
function encodeImage(imagePath) {
    const imageBuffer = fs.readFileSync(imagePath);
    return imageBuffer.toString('base64');
}

const SURUS_API_KEY = "tu_clave_api";
const API_URL = 'https://api.surus.dev/functions/v1/chat/completions';

// Codificar la imagen
const base64Image = encodeImage('ruta/a/tu/imagen.jpg');

fetch(API_URL, {
  method: 'POST',
  headers: {
    'Authorization': 'Bearer ' + SURUS_API_KEY,
    'Content-Type': 'application/json'
  },
  body: JSON.stringify({
    model: 'OpenGVLab/InternVL3-2B',
    messages: [
      { role: 'user', content: [
        { type: 'text', text: 'Qué hay en esta imagen?' },
        { type: 'image_url', image_url: { url: `data:image/jpeg;base64,${base64Image}` } }
      ] }
    ],
    max_tokens: 50
  })
})
.then(res => res.json())
.then(data => console.log(data));
"""


SEED_000_BASE64_CURL = r"""# Primero codificar la imagen a base64
BASE64_IMAGE=$(base64 -w 0 ruta/a/tu/imagen.jpg)

curl -X POST https://api.surus.dev/functions/v1/chat/completions \
  -H "Authorization: Bearer tu_clave_api" \
  -H "Content-Type: application/json" \
  -d "{\"model\": \"OpenGVLab/InternVL3-2B\", \"messages\": [{\"role\": \"user\", \"content\": [{\"type\": \"text\", \"text\": \"Qué hay en esta imagen?\"}, {\"type\": \"image_url\", \"image_url\": {\"url\": \"data:image/jpeg;base64,$BASE64_IMAGE\"}}]}], \"max_tokens\": 50}"
"""


SEED_000_INPUT_IMAGE_PYTHON = r"""import base64
import requests

# Codificar imagen local a base64
def encode_image(image_path):
    with open(image_path, "rb") as image_file:
        return base64.b64encode(image_file.read()).decode('utf-8')

SURUS_API_KEY = "tu_clave_api"
API_URL = "https://api.surus.dev/functions/v1/chat/completions"
headers = {"Authorization": "Bearer " + SURUS_API_KEY}

# Codificar la imagen
base64_image = encode_image("ruta/a/tu/imagen.jpg")

data = {
    "model": "ChatDOC/OCRFlux-3B",
    "messages": [
        {"role": "user", "content": [
            {"type": "text", "text": "Convert to markdown"},
            {"type": "input_image", "image_url": f"data:image/jpeg;base64,{base64_image}"}
        ]}
    ],
    "max_tokens": 50
}

response = requests.post(API_URL, headers=headers, json=data)
print(response.json())
"""


SEED_000_INPUT_IMAGE_JAVASCRIPT = r"""const fs = require('fs');

// Codificar imagen local a base64
function encodeImage(imagePath) {
    const imageBuffer = fs.readFileSync(imagePath);
    return imageBuffer.toString('base64');
}

const SURUS_API_KEY = "tu_clave_api";
const API_URL = 'https://api.surus.dev/functions/v1/chat/completions';

// Codificar la imagen
const base64Image = encodeImage('ruta/a/tu/imagen.jpg');

fetch(API_URL, {
  method: 'POST',
  headers: {
    'Authorization': 'Bearer ' + SURUS_API_KEY,
    'Content-Type': 'application/json'
  },
  body: JSON.stringify({
    model: 'ChatDOC/OCRFlux-3B',
    messages: [
      { role: 'user', content: [
        { type: 'text', text: 'Convert to markdown' },
        { type: 'input_image', image_url: `data:image/jpeg;base64,${base64Image}` }
      ] }
    ],
    max_tokens: 50
  })
})
.then(res => res.json())
.then(data => console.log(data));
"""


SEED_000_INPUT_IMAGE_CURL = r"""# Primero codificar la imagen a base64
BASE64_IMAGE=$(base64 -w 0 ruta/a/tu/imagen.jpg)

curl -X POST https://api.surus.dev/functions/v1/chat/completions \
  -H "Authorization: Bearer tu_clave_api" \
  -H "Content-Type: application/json" \
  -d "{\"model\": \"ChatDOC/OCRFlux-3B\", \"messages\": [{\"role\": \"user\", \"content\": [{\"type\": \"text\", \"text\": \"Convert to markdown\"}, {\"type\": \"input_image\", \"image_url\": \"data:image/jpeg;base64,$BASE64_IMAGE\"}]}], \"max_tokens\": 50}"
"""


SEED_004_CURL = r"""curl -X POST "https://inference.nebulablock.com/v1/chat/completions" \
    -H "Content-Type: application/json" \
    -H "Authorization: Bearer $NEBULA_API_KEY" \
    --data-raw '{
        "messages": [
			{"role":"user","content":[
			{"type":"image_url","image_url":
			{"url":"https://qianwen-res.oss-cn-beijing.aliyuncs.com/Qwen-VL/assets/demo.jpeg"}},
			{"type":"text","text":"What is this image?"}
		]}],
        "model": "Qwen/Qwen2.5-VL-7B-Instruct",
        "max_tokens": null, 
        "temperature": 1,
        "top_p": 0.9,
        "stream": false
    }'
"""


# name -> (runner, code): python -c, node -e, or bash -c for the curl commands.
SNIPPETS: dict[str, tuple[str, str]] = {
    "000-url-python": ("python", SEED_000_URL_PYTHON),
    "000-url-javascript": ("node", SEED_000_URL_JAVASCRIPT),
    "000-url-curl": ("curl", SEED_000_URL_CURL),
    "000-guided-python": ("python", SEED_000_GUIDED_PYTHON),
    "000-guided-javascript": ("node", SEED_000_GUIDED_JAVASCRIPT),
    "000-guided-curl": ("curl", SEED_000_GUIDED_CURL),
    "000-base64-python": ("python", SEED_000_BASE64_PYTHON),
    "000-base64-javascript": ("node", SEED_000_BASE64_JAVASCRIPT),
    "000-base64-curl": ("curl", SEED_000_BASE64_CURL),
    "000-input-image-python": ("python", SEED_000_INPUT_IMAGE_PYTHON),
    "000-input-image-javascript": ("node", SEED_000_INPUT_IMAGE_JAVASCRIPT),
    "000-input-image-curl": ("curl", SEED_000_INPUT_IMAGE_CURL),
    "004-curl": ("curl", SEED_004_CURL),
}
