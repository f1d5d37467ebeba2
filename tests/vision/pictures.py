"""The pictures the served-model tests send, and what the tiny Qwen2-VL spends on each.

Every picture is served by the ``image_host`` fixture at ``/files/<name>`` and can be sent inline
as ``picture.data_uri``. ``picture.tokens(detail)`` is the number of prompt tokens the model
spends on it, computed here from Qwen2-VL's published resize rule rather than asked of either
engine, so the count each engine reports in ``usage.prompt_tokens`` is checked, not echoed.
"""

from __future__ import annotations

import base64
import io
import math
from dataclasses import dataclass, field

from PIL import Image

from tests.vision.support import noise_image

# Qwen2-VL: 14-px patches merged 2x2 into one token, so sides snap to multiples of 28. The tiny
# model's processor takes llama.cpp's limits (at least 8 tokens, at most 4096), so both engines
# count alike (see pampero.dev.tiny_vlm).
FACTOR = 28
MIN_PIXELS = 8 * FACTOR**2
MAX_PIXELS = 4096 * FACTOR**2
LOW_DETAIL_SIDE = 512  # OpenAI's low detail, as pampero.media.decode applies it
WRAPPING = 2  # <|vision_start|> and <|vision_end|> around the image's tokens


@dataclass(frozen=True)
class Picture:
    name: str
    data: bytes = field(repr=False)
    size: tuple[int, int]
    media_type: str

    @property
    def data_uri(self) -> str:
        return f"data:{self.media_type};base64,{base64.b64encode(self.data).decode()}"

    def tokens(self, detail: str = "auto") -> int:
        """Prompt tokens for this picture at ``detail``, its wrapping tokens included."""
        width, height = self.size
        if detail == "low" and max(width, height) > LOW_DETAIL_SIDE:
            scale = LOW_DETAIL_SIDE / max(width, height)
            width, height = round(width * scale), round(height * scale)
        grid_h, grid_w = _smart_resize(height, width)
        return (grid_h // FACTOR) * (grid_w // FACTOR) + WRAPPING


def _smart_resize(height: int, width: int) -> tuple[int, int]:
    """Qwen2-VL's ``smart_resize`` (transformers' ``image_processing_qwen2_vl``)."""
    h_bar = max(FACTOR, round(height / FACTOR) * FACTOR)
    w_bar = max(FACTOR, round(width / FACTOR) * FACTOR)
    if h_bar * w_bar > MAX_PIXELS:
        beta = math.sqrt(height * width / MAX_PIXELS)
        h_bar = math.floor(height / beta / FACTOR) * FACTOR
        w_bar = math.floor(width / beta / FACTOR) * FACTOR
    elif h_bar * w_bar < MIN_PIXELS:
        beta = math.sqrt(MIN_PIXELS / (height * width))
        h_bar = math.ceil(height * beta / FACTOR) * FACTOR
        w_bar = math.ceil(width * beta / FACTOR) * FACTOR
    return h_bar, w_bar


def _encode(name: str, image: Image.Image, fmt: str, media_type: str) -> Picture:
    buf = io.BytesIO()
    image.save(buf, fmt)
    return Picture(name, buf.getvalue(), image.size, media_type)


def png(name: str, image: Image.Image) -> Picture:
    return _encode(name, image, "PNG", "image/png")


def jpeg(name: str, image: Image.Image) -> Picture:
    return _encode(name, image, "JPEG", "image/jpeg")


def _bomb() -> Picture:
    """A decompression bomb: 10000x10000 pixels (over the default 50-megapixel cap) of one bit
    each, a few kilobytes of PNG that would decode to 300 MB of RGB."""
    return png("bomb.png", Image.new("1", (10_000, 10_000)))


WHITE = png("white.png", Image.new("RGB", (80, 60), (255, 255, 255)))
BLACK = png("black.png", Image.new("RGB", (80, 60), (0, 0, 0)))
SQUARE = png("square.png", noise_image(56, 56, seed=1))
# Large enough for detail to matter: 768 px on the long side, 512 with detail "low".
WIDE = png("wide.png", noise_image(768, 192, seed=2))
# More image tokens than the served context holds (see N_CTX in serve_contract.py).
TALL = png("tall.png", Image.new("RGB", (224, 896), (90, 120, 150)))
# Stand-ins for the seeds' pictures, under their file names.
SEED_000_PHOTO = jpeg("IqAOn4t.jpeg", noise_image(80, 60, seed=3))
SEED_004_PHOTO = jpeg("demo.jpeg", noise_image(84, 56, seed=4))
BOMB = _bomb()

PICTURES = (WHITE, BLACK, SQUARE, WIDE, TALL, SEED_000_PHOTO, SEED_004_PHOTO, BOMB)
