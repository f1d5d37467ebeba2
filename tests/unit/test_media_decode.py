"""data: URIs and Pillow decoding: formats, modes, orientation, detail, and the pixel cap."""

from __future__ import annotations

import base64
import io
import struct
import zlib
from typing import Any

import pytest
from PIL import Image

from pampero.errors import InvalidRequestError
from pampero.media.codes import IMAGE_TOO_LARGE, INVALID_IMAGE
from pampero.media.decode import decode_image, parse_data_uri
from pampero.protocol.messages import ImageDetail

MAX_PIXELS = 50_000_000
RED = (255, 0, 0)
BLUE = (0, 0, 255)
WHITE = (255, 255, 255)


def encode(img: Image.Image, fmt: str, **kwargs: Any) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **kwargs)
    return buf.getvalue()


def data_uri(data: bytes, media_type: str = "image/png") -> str:
    return f"data:{media_type};base64,{base64.b64encode(data).decode()}"


def decode(data: bytes, detail: ImageDetail = "auto", max_pixels: int = MAX_PIXELS) -> Image.Image:
    result = decode_image(data, max_pixels=max_pixels, detail=detail)
    assert result.image.mode == "RGB"
    return result.image


def close(pixel: Any, expected: tuple[int, int, int], tolerance: int = 40) -> bool:
    return all(abs(int(a) - b) <= tolerance for a, b in zip(pixel, expected, strict=True))


def refuse(code: str, data: bytes, **kwargs: Any) -> InvalidRequestError:
    with pytest.raises(InvalidRequestError) as info:
        decode_image(data, max_pixels=kwargs.get("max_pixels", MAX_PIXELS), detail="auto")
    assert info.value.code == code
    return info.value


def png_claiming(width: int, height: int) -> bytes:
    """A tiny PNG whose header claims ``width`` x ``height``; its pixel data is a stub."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        crc = zlib.crc32(kind + body) & 0xFFFFFFFF
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", crc)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\x00" * 64)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


# -- data URIs -------------------------------------------------------------------------------


def test_data_uri_round_trip() -> None:
    png = encode(Image.new("RGB", (3, 2), RED), "PNG")
    assert parse_data_uri(data_uri(png), 10_000) == png


@pytest.mark.parametrize(
    "prefix", ["data:image/png;base64,", "data:IMAGE/PNG;BASE64,", "data:image/jpg;base64,"]
)
def test_data_uri_prefix_forms(prefix: str) -> None:
    png = encode(Image.new("RGB", (3, 2), RED), "PNG")
    assert parse_data_uri(prefix + base64.b64encode(png).decode(), 10_000) == png


def test_data_uri_tolerates_line_breaks_missing_padding_and_urlsafe_alphabet() -> None:
    raw = bytes(range(256)) * 3
    text = base64.urlsafe_b64encode(raw).decode().rstrip("=")
    wrapped = "\n".join(text[i : i + 76] for i in range(0, len(text), 76))
    assert parse_data_uri("data:image/png;base64," + wrapped, 10_000) == raw


def test_bad_base64_is_refused_without_echoing_it() -> None:
    secret = "SECRET-TOKEN!!-not*base64"
    with pytest.raises(InvalidRequestError) as info:
        parse_data_uri(f"data:image/png;base64,{secret}", 10_000)
    assert info.value.code == INVALID_IMAGE
    assert "base64" in info.value.message
    assert "SECRET" not in info.value.message


@pytest.mark.parametrize(
    ("uri", "words"),
    [
        ("data:text/plain;base64,aGVsbG8=", "not an image"),
        ("data:application/octet-stream;base64,aGVsbG8=", "not an image"),
        ("data:;base64,aGVsbG8=", "not an image"),
        ("data:image/bmp;base64,Qk0=", "not supported"),
        ("data:image/svg+xml;base64,PHN2Zz4=", "not supported"),
        ("data:image/png,rawbytes", "base64"),
        ("data:image/png;base64", "','"),
        ("data:image/png;base64,", "empty"),
    ],
)
def test_data_uri_refusals(uri: str, words: str) -> None:
    with pytest.raises(InvalidRequestError) as info:
        parse_data_uri(uri, 10_000)
    assert info.value.code == INVALID_IMAGE
    assert words in info.value.message


def test_data_uri_byte_cap_applies_to_decoded_bytes() -> None:
    assert len(parse_data_uri(data_uri(b"x" * 1000), 1000)) == 1000
    for size in (1001, 100_000):  # just over: exact check; far over: refused before decoding
        with pytest.raises(InvalidRequestError) as info:
            parse_data_uri(data_uri(b"x" * size), 1000)
        assert info.value.code == IMAGE_TOO_LARGE


# -- formats ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fmt", "kwargs"),
    [("PNG", {}), ("JPEG", {"quality": 95}), ("WEBP", {"lossless": True}), ("GIF", {})],
)
def test_accepted_formats(fmt: str, kwargs: dict[str, Any]) -> None:
    data = encode(Image.new("RGB", (16, 8), RED), fmt, **kwargs)
    result = decode_image(data, max_pixels=MAX_PIXELS, detail="auto")
    assert result.format == fmt
    assert result.original_size == (16, 8) and result.image.size == (16, 8)
    assert close(result.image.getpixel((8, 4)), RED)


@pytest.mark.parametrize("fmt", ["BMP", "TIFF", "ICO", "PPM"])
def test_other_formats_are_refused(fmt: str) -> None:
    error = refuse(INVALID_IMAGE, encode(Image.new("RGB", (16, 16), RED), fmt))
    assert "supported format" in error.message


def test_not_an_image() -> None:
    refuse(INVALID_IMAGE, b"<html><body>Not found</body></html>")


def test_truncated_image() -> None:
    data = encode(Image.effect_noise((64, 64), 50).convert("RGB"), "PNG")
    error = refuse(INVALID_IMAGE, data[: len(data) // 2])
    assert "truncated or corrupt" in error.message


def test_gif_first_frame() -> None:
    frames = [Image.new("RGB", (8, 8), RED), Image.new("RGB", (8, 8), BLUE)]
    data = encode(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=100)
    assert Image.open(io.BytesIO(data)).n_frames == 2
    assert close(decode(data).getpixel((4, 4)), RED)


def test_animated_webp_first_frame() -> None:
    frames = [Image.new("RGB", (8, 8), BLUE), Image.new("RGB", (8, 8), RED)]
    data = encode(frames[0], "WEBP", save_all=True, append_images=frames[1:], lossless=True)
    assert close(decode(data).getpixel((4, 4)), BLUE)


# -- orientation and modes --------------------------------------------------------------------


def test_exif_orientation_is_applied() -> None:
    img = Image.new("RGB", (40, 20), RED)
    img.paste(BLUE, (20, 0, 40, 20))  # red left half, blue right half
    exif = Image.Exif()
    exif[0x0112] = 6  # stored rotated: display by turning 90 degrees clockwise
    result = decode_image(
        encode(img, "JPEG", exif=exif, quality=95), max_pixels=MAX_PIXELS, detail="auto"
    )
    assert result.original_size == (40, 20)
    assert result.image.size == (20, 40)
    # Turned clockwise, the left edge is now on top.
    assert close(result.image.getpixel((10, 5)), RED)
    assert close(result.image.getpixel((10, 35)), BLUE)


def test_broken_exif_does_not_lose_the_image() -> None:
    img = Image.new("RGB", (8, 8), RED)
    data = encode(img, "JPEG", exif=b"Exif\x00\x00garbage-not-tiff", quality=95)
    assert close(decode(data).getpixel((4, 4)), RED)


def test_palette_with_transparency_is_composited_on_white() -> None:
    img = Image.new("P", (4, 4), 0)
    img.putpalette([0, 0, 0, *RED] + [0] * 762)
    img.putpixel((3, 3), 1)
    out = decode(encode(img, "PNG", transparency=0))
    assert out.getpixel((0, 0)) == WHITE
    assert out.getpixel((3, 3)) == RED


def test_rgba_and_la_are_composited_on_white() -> None:
    rgba = Image.new("RGBA", (3, 1), (255, 0, 0, 0))
    rgba.putpixel((1, 0), (0, 0, 255, 255))
    rgba.putpixel((2, 0), (0, 0, 0, 128))
    out = decode(encode(rgba, "PNG"))
    assert out.getpixel((0, 0)) == WHITE
    assert out.getpixel((1, 0)) == BLUE
    assert close(out.getpixel((2, 0)), (127, 127, 127), tolerance=2)
    la = decode(encode(Image.new("LA", (2, 2), (0, 0)), "PNG"))
    assert la.getpixel((0, 0)) == WHITE


def test_transparent_gif_is_composited_on_white() -> None:
    img = Image.new("P", (4, 4), 0)
    img.putpalette([*BLUE, *RED] + [0] * 762)
    img.putpixel((0, 0), 1)
    out = decode(encode(img, "GIF", transparency=0))
    assert out.getpixel((3, 3)) == WHITE
    assert out.getpixel((0, 0)) == RED


def test_cmyk_jpeg_becomes_rgb() -> None:
    data = encode(Image.new("CMYK", (8, 8), (0, 255, 255, 0)), "JPEG", quality=95)
    assert Image.open(io.BytesIO(data)).mode == "CMYK"
    assert close(decode(data).getpixel((4, 4)), RED)


def test_sixteen_bit_grey_keeps_its_range() -> None:
    img = Image.new("I;16", (3, 1))
    for x, value in enumerate((65535, 32768, 0)):
        img.putpixel((x, 0), value)
    data = encode(img, "PNG")
    assert Image.open(io.BytesIO(data)).mode.startswith("I")
    out = decode(data)
    assert out.getpixel((0, 0)) == WHITE
    assert out.getpixel((1, 0)) == (128, 128, 128)
    assert out.getpixel((2, 0)) == (0, 0, 0)


@pytest.mark.parametrize("mode", ["1", "L", "P"])
def test_other_modes_become_rgb(mode: str) -> None:
    out = decode(encode(Image.new(mode, (4, 4), 1 if mode != "L" else 255), "PNG"))
    assert out.size == (4, 4)


# -- detail -----------------------------------------------------------------------------------


@pytest.mark.parametrize(("fmt", "size"), [("PNG", (2000, 1000)), ("JPEG", (3000, 1500))])
def test_low_detail_caps_the_long_side_at_512(fmt: str, size: tuple[int, int]) -> None:
    data = encode(Image.new("RGB", size, RED), fmt)
    result = decode_image(data, max_pixels=MAX_PIXELS, detail="low")
    assert result.image.size == (512, 256)
    assert result.original_size == size
    assert close(result.image.getpixel((256, 128)), RED)


def test_low_detail_keeps_aspect_of_tall_images() -> None:
    data = encode(Image.new("RGB", (300, 1200), RED), "PNG")
    assert decode(data, "low").size == (128, 512)


@pytest.mark.parametrize("detail", ["auto", "high"])
def test_high_and_auto_keep_the_size(detail: ImageDetail) -> None:
    data = encode(Image.new("RGB", (2000, 1000), RED), "PNG")
    assert decode(data, detail).size == (2000, 1000)


def test_low_detail_never_enlarges() -> None:
    data = encode(Image.new("RGB", (300, 200), RED), "PNG")
    assert decode(data, "low").size == (300, 200)


# -- pixel cap --------------------------------------------------------------------------------


def test_header_claiming_too_many_pixels_is_refused_before_decoding() -> None:
    # 9000x9000 is 81 MP: over our 50 MP cap, under Pillow's own warning threshold, so this is
    # our check. The pixel data is a stub: decoding it would fail as corrupt, not as too large.
    data = png_claiming(9000, 9000)
    assert len(data) < 200
    error = refuse(IMAGE_TOO_LARGE, data)
    assert "9000x9000" in error.message
    assert "50,000,000" in error.message
    assert "truncated" not in error.message


def test_decompression_bomb_past_pillows_own_limit() -> None:
    refuse(IMAGE_TOO_LARGE, png_claiming(50_000, 50_000))


def test_pixel_cap_from_the_policy() -> None:
    data = encode(Image.new("RGB", (20, 20), RED), "PNG")
    assert decode(data, max_pixels=400).size == (20, 20)
    refuse(IMAGE_TOO_LARGE, data, max_pixels=399)


def test_real_compressible_bomb_is_refused() -> None:
    # 8000x8000 of one colour: 64 MP of pixels in a few kilobytes.
    data = encode(Image.new("L", (8000, 8000), 0), "PNG", optimize=True)
    assert len(data) < 200_000
    refuse(IMAGE_TOO_LARGE, data)
