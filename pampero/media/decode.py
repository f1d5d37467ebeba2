"""Image bytes from ``data:`` URIs, and image bytes into bounded, upright RGB pixels.

``parse_data_uri`` accepts only base64 payloads with an image media type we decode (PNG, JPEG,
WEBP, GIF), tolerating what clients commonly send: line breaks in the payload, missing ``=``
padding, the URL-safe alphabet, ``image/jpg``. The byte cap is checked on the payload's length
before decoding and on the decoded bytes.

``decode_image`` never relies on Pillow's global ``Image.MAX_IMAGE_PIXELS``: it reads the
header (``Image.open`` decodes no pixels), refuses more pixels than the policy allows, and only
then decodes. The result is always RGB: EXIF orientation applied; transparency (palette, LA,
RGBA) composited on white; CMYK, 16-bit and 1-bit images converted; the first frame of an
animated GIF or WEBP. ``detail="low"`` shrinks the long side to 512 px (aspect kept), as
OpenAI does for low detail; ``high`` and ``auto`` leave the size alone, because the model's own
image processor knows its tiling and resolution limits.

The declared media type of a data URI only has to be an accepted image type: the bytes are
sniffed, so a PNG labelled ``image/jpeg`` (a common client slip) still loads.

Both functions are synchronous and CPU-bound; ``ImageSource`` runs the decode in a worker
thread. Errors are ``InvalidRequestError`` whose message never repeats the payload.
"""

from __future__ import annotations

import base64
import binascii
import io
from dataclasses import dataclass

from PIL import Image, UnidentifiedImageError

from pampero.errors import InvalidRequestError
from pampero.media.codes import IMAGE_TOO_LARGE, INVALID_IMAGE
from pampero.protocol.messages import ImageDetail

LOW_DETAIL_MAX_SIDE = 512
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


def decode_image(data: bytes, *, max_pixels: int, detail: ImageDetail) -> DecodedImage:
    """Decode ``data`` into RGB pixels after checking the header against ``max_pixels``."""
    try:
        # Not closed with ``with``: closing would free pixels ``rgb`` may share, and a
        # BytesIO holds no OS resource.
        img = Image.open(io.BytesIO(data), formats=ACCEPTED_FORMATS)  # reads the header only
        width, height = img.size
        if width * height > max_pixels:
            raise _pixels_exceeded(width, height, max_pixels)
        fmt = img.format or "?"
        if detail == "low":
            # JPEG can decode at 1/2, 1/4 or 1/8 scale directly: less memory and time.
            img.draft("RGB", (LOW_DETAIL_MAX_SIDE, LOW_DETAIL_MAX_SIDE))
        img.load()  # the first frame only, for animated GIF and WEBP
        rgb = _to_rgb(_upright(img))
    except InvalidRequestError:
        raise
    except UnidentifiedImageError:
        raise _invalid(
            f"The data is not an image in a supported format ({', '.join(ACCEPTED_FORMATS)})."
        ) from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        # Pillow's own guard (only when warnings are errors, for the warning) fired first.
        raise _pixels_exceeded(0, 0, max_pixels) from None
    except MemoryError:
        raise
    except Exception:
        # Pillow reports truncated or corrupt data as OSError, SyntaxError, ValueError,
        # struct.error, EOFError ...; all mean the same to the client.
        raise _invalid("The image could not be decoded (it is truncated or corrupt).") from None
    if detail == "low":
        rgb.thumbnail((LOW_DETAIL_MAX_SIDE, LOW_DETAIL_MAX_SIDE), Image.Resampling.LANCZOS)
    return DecodedImage(rgb, _FORMAT_NAMES.get(fmt, fmt), (width, height))


def _pixels_exceeded(width: int, height: int, max_pixels: int) -> InvalidRequestError:
    size = f" ({width}x{height})" if width and height else ""
    return InvalidRequestError(
        f"The image has too many pixels{size}: the limit is {max_pixels:,} pixels.",
        code=IMAGE_TOO_LARGE,
    )


def _upright(img: Image.Image) -> Image.Image:
    try:
        orientation = img.getexif().get(_ORIENTATION_TAG, 1)
    except Exception:
        # Unreadable EXIF is broken metadata, not broken pixels: show the image as stored.
        return img
    method = _TRANSPOSE.get(orientation) if isinstance(orientation, int) else None
    return img.transpose(method) if method is not None else img


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
