"""Image bytes from ``data:`` URIs, and image bytes into bounded, upright RGB pixels.

``parse_data_uri`` accepts only base64 payloads with an image media type we decode (PNG, JPEG,
WEBP, GIF), tolerating what clients commonly send: line breaks in the payload, missing ``=``
padding, the URL-safe alphabet, ``image/jpg``. The byte cap is checked on the payload's length
before decoding and on the decoded bytes.

``decode_image`` never relies on Pillow's global ``Image.MAX_IMAGE_PIXELS``: it reads the
header (``Image.open`` decodes no pixels), refuses more pixels than the policy allows, and only
then decodes. The result is always RGB: EXIF orientation applied; transparency (palette, LA,
RGBA) composited on white; CMYK, 16-bit and 1-bit images converted; the first frame of an
animated GIF or WEBP. The result fits ``max_side`` (2048 by default, where OpenAI scales
high-detail images) on both sides, and 512 for ``detail="low"`` (aspect kept); smaller images
keep their size, because the model's own image processor knows its tiling and resolution.

Memory: a JPEG is decoded at the smallest of Pillow's 1/2, 1/4, 1/8 scales that still covers
the target; other formats decode at full size in their own mode (a palette PNG is one byte a
pixel), then are converted and box-reduced one band of rows at a time, and the freed heap is
handed back to the OS (``release_freed_memory``). A 7000 x 7000 palette PNG with transparency
(48 KB) peaked at 695 MB and kept 541 MB of resident memory before; see
``tests/unit/test_media_memory.py`` for what it takes now.

The declared media type of a data URI only has to be an accepted image type: the bytes are
sniffed, so a PNG labelled ``image/jpeg`` (a common client slip) still loads.

Both functions are synchronous and CPU-bound; ``ImageSource`` runs the decode in a worker
thread. Errors are ``InvalidRequestError`` whose message never repeats the payload.
"""

from __future__ import annotations

import base64
import binascii
import ctypes
import ctypes.util
import functools
import io
from collections.abc import Callable
from dataclasses import dataclass

from PIL import Image, UnidentifiedImageError

from pampero.errors import InvalidRequestError
from pampero.media.codes import IMAGE_TOO_LARGE, INVALID_IMAGE
from pampero.protocol.messages import ImageDetail

LOW_DETAIL_MAX_SIDE = 512
# OpenAI scales a high-detail image to fit 2048 x 2048 before tiling it; past that, pixels only
# cost memory (the model's own processor shrinks further).
DEFAULT_MAX_SIDE = 2048
ACCEPTED_FORMATS = ("PNG", "JPEG", "WEBP", "GIF")
ACCEPTED_MEDIA_TYPES = frozenset(
    {
        "image/png",
        "image/apng",
        "image/x-png",
        "image/jpeg",
        "image/jpg",
        "image/pjpeg",
        "image/webp",
        "image/gif",
    }
)
# Pillow reports multi-picture JPEGs from phones as MPO; to callers they are JPEGs.
_FORMAT_NAMES = {"MPO": "JPEG"}
_ORIENTATION_TAG = 0x0112
_TRANSPOSE = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}
_ALPHA_MODES = frozenset({"RGBA", "LA", "PA", "RGBa", "La"})
_WIDE_MODES = frozenset({"I", "I;16", "I;16L", "I;16B", "I;16N"})
_WHITE = (255, 255, 255)


@dataclass(frozen=True, slots=True)
class DecodedImage:
    image: Image.Image
    """RGB pixels, upright, resized for ``detail="low"``."""
    format: str
    """``PNG``, ``JPEG``, ``WEBP`` or ``GIF``: what the bytes were, whatever was declared."""
    original_size: tuple[int, int]
    """Width and height as stored, before orientation and resizing."""


def _invalid(reason: str) -> InvalidRequestError:
    return InvalidRequestError(reason, code=INVALID_IMAGE)


def _too_large(max_bytes: int) -> InvalidRequestError:
    return InvalidRequestError(
        f"The image is larger than the {format_bytes(max_bytes)} limit.", code=IMAGE_TOO_LARGE
    )


def format_bytes(n: int) -> str:
    """``20 MB`` for 20 MiB; what error messages call a byte cap."""
    for unit, size in (("MB", 1 << 20), ("KB", 1 << 10)):
        if n >= size:
            return f"{n / size:.3g} {unit}"
    return f"{n} bytes"


def parse_data_uri(uri: str, max_bytes: int) -> bytes:
    """The bytes of a base64 ``data:image/...`` URI, at most ``max_bytes`` of them."""
    header, comma, payload = uri[len("data:") :].partition(",")
    if not comma:
        raise _invalid("The data URI is malformed: it has no ',' before its payload.")
    media_type, *params = (p.strip().lower() for p in header.split(";"))
    if media_type not in ACCEPTED_MEDIA_TYPES:
        if not media_type.startswith("image/"):
            raise _invalid("The data URI's media type is not an image type.")
        raise _invalid(_unsupported_format())
    if "base64" not in params:
        raise _invalid("The data URI must be base64-encoded (data:image/png;base64,...).")
    payload = "".join(payload.split())
    if len(payload) // 4 * 3 > max_bytes + 2:
        raise _too_large(max_bytes)
    if "-" in payload or "_" in payload:
        payload = payload.translate(_URLSAFE)
    payload += "=" * (-len(payload) % 4)
    try:
        data = base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError):
        raise _invalid("The data URI's base64 payload is malformed.") from None
    if not data:
        raise _invalid("The data URI's payload is empty.")
    if len(data) > max_bytes:
        raise _too_large(max_bytes)
    return data


_URLSAFE = str.maketrans("-_", "+/")


def _unsupported_format() -> str:
    return f"The image format is not supported (use {', '.join(ACCEPTED_FORMATS)})."


def image_size(data: bytes) -> tuple[int, int]:
    """Width and height from the image's header, without decoding a pixel."""
    try:
        with Image.open(io.BytesIO(data), formats=ACCEPTED_FORMATS) as img:
            return img.size
    except UnidentifiedImageError:
        raise _not_an_image() from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise _pixels_exceeded(0, 0, 0) from None
    except MemoryError:
        raise
    except Exception:
        raise _corrupt() from None


def decode_image(
    data: bytes, *, max_pixels: int, detail: ImageDetail, max_side: int = DEFAULT_MAX_SIDE
) -> DecodedImage:
    """Decode ``data`` into RGB pixels after checking the header against ``max_pixels``; the
    result fits ``max_side`` (``LOW_DETAIL_MAX_SIDE`` for ``detail="low"``) on both sides."""
    side = min(max_side, LOW_DETAIL_MAX_SIDE) if detail == "low" else max_side
    width = height = 0
    try:
        # Not closed with ``with``: closing would free pixels ``rgb`` may share, and a
        # BytesIO holds no OS resource.
        img = Image.open(io.BytesIO(data), formats=ACCEPTED_FORMATS)  # reads the header only
        width, height = img.size
        if width * height > max_pixels:
            raise _pixels_exceeded(width, height, max_pixels)
        fmt = img.format or "?"
        # JPEG can decode at 1/2, 1/4 or 1/8 scale directly: less memory and time.
        img.draft("RGB", (side, side))
        img.load()  # the first frame only, for animated GIF and WEBP
        transpose = _orientation(img)
        rgb = _shrunk_rgb(img, side)
        del img  # the full-size pixels: give them back before the result is used
        if transpose is not None:
            rgb = rgb.transpose(transpose)
        rgb.thumbnail((side, side), Image.Resampling.LANCZOS)
    except InvalidRequestError:
        raise
    except UnidentifiedImageError:
        raise _not_an_image() from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        # Pillow's own guard (only when warnings are errors, for the warning) fired first.
        raise _pixels_exceeded(0, 0, max_pixels) from None
    except MemoryError:
        raise
    except Exception:
        # Pillow reports truncated or corrupt data as OSError, SyntaxError, ValueError,
        # struct.error, EOFError ...; all mean the same to the client.
        raise _corrupt() from None
    finally:
        if width * height >= _TRIM_AFTER_PIXELS:
            release_freed_memory()
    return DecodedImage(rgb, _FORMAT_NAMES.get(fmt, fmt), (width, height))


def _not_an_image() -> InvalidRequestError:
    return _invalid(
        f"The data is not an image in a supported format ({', '.join(ACCEPTED_FORMATS)})."
    )


def _corrupt() -> InvalidRequestError:
    return _invalid("The image could not be decoded (it is truncated or corrupt).")


def _shrunk_rgb(img: Image.Image, side: int) -> Image.Image:
    """``img`` as RGB, shrunk by the largest whole factor that keeps it at least ``side`` on
    its long side; the caller's thumbnail does the rest.

    Converting is what costs memory (a palette image becomes 3 or 4 bytes a pixel, and
    transparency is composited on a second full-size copy), so a large image is converted and
    box-reduced one band of rows at a time: the peak is the decoded image plus one band, not
    three full-size copies."""
    width, height = img.size
    factor = max(width, height) // side
    if factor < 2:
        return _to_rgb(img)
    rows = max(factor, _BAND_PIXELS // max(width, 1) // factor * factor)
    out = Image.new("RGB", (-(-width // factor), -(-height // factor)))
    for top in range(0, height, rows):
        band = _to_rgb(img.crop((0, top, width, min(top + rows, height))))
        out.paste(band.reduce(factor), (0, top // factor))
    return out


# A band of about 4 MP keeps each conversion small; the heap is trimmed after images this large.
_BAND_PIXELS = 4_000_000
_TRIM_AFTER_PIXELS = 4_000_000


def release_freed_memory() -> None:
    """Hand memory freed by a large decode back to the OS.

    glibc keeps freed blocks in the arena of the thread that used them (decodes run in worker
    threads), so without this a 50 MP image keeps the process hundreds of MB larger for good.
    A no-op where ``malloc_trim`` does not exist (musl, macOS)."""
    trim = _malloc_trim()
    if trim is not None:
        trim(0)


@functools.cache
def _malloc_trim() -> Callable[[int], int] | None:
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        trim: Callable[[int], int] = libc.malloc_trim
    except (OSError, AttributeError):
        return None
    return trim


def _pixels_exceeded(width: int, height: int, max_pixels: int) -> InvalidRequestError:
    size = f" ({width}x{height})" if width and height else ""
    return InvalidRequestError(
        f"The image has too many pixels{size}: the limit is {max_pixels:,} pixels.",
        code=IMAGE_TOO_LARGE,
    )


def _orientation(img: Image.Image) -> Image.Transpose | None:
    """The transpose that shows ``img`` upright, from its EXIF orientation."""
    try:
        orientation = img.getexif().get(_ORIENTATION_TAG, 1)
    except Exception:
        # Unreadable EXIF is broken metadata, not broken pixels: show the image as stored.
        return None
    return _TRANSPOSE.get(orientation) if isinstance(orientation, int) else None


def _to_rgb(img: Image.Image) -> Image.Image:
    if img.mode in _WIDE_MODES:
        # 16-bit (and 32-bit integer) grey: keep the top 8 bits; Pillow's plain "L"
        # conversion would clip everything above 255 to white.
        img = img.convert("I").point(lambda v: v * (1 / 256)).convert("L")
    elif "transparency" in img.info or img.mode == "P":
        img = img.convert("RGBA") if "transparency" in img.info else img.convert("RGB")
    if img.mode in _ALPHA_MODES:
        rgba = img.convert("RGBA")
        background = Image.new("RGB", rgba.size, _WHITE)
        background.paste(rgba, mask=rgba.getchannel("A"))
        return background
    return img if img.mode == "RGB" else img.convert("RGB")
