"""ImageSource: the part shapes, every turn in order, params in errors, limits and schemes."""

from __future__ import annotations

import asyncio
import base64
import io
from typing import Any

import pytest
from PIL import Image
from pydantic import TypeAdapter

from pampero.errors import InvalidRequestError
from pampero.media import ImageSource, LoadedImage, MediaPolicy, image_parts
from pampero.media.codes import IMAGE_TOO_LARGE, INVALID_IMAGE, INVALID_IMAGE_URL, TOO_MANY_IMAGES
from pampero.protocol.messages import ChatMessage

MESSAGES = TypeAdapter(list[ChatMessage])


def data_uri(width: int, height: int = 10, fmt: str = "PNG") -> str:
    buf = io.BytesIO()
    Image.new("RGB", (width, height), (0, 128, 255)).save(buf, fmt)
    return f"data:image/{fmt.lower()};base64,{base64.b64encode(buf.getvalue()).decode()}"


def conversation() -> list[dict[str, Any]]:
    """Images in an earlier turn, interleaved with text, in all three part shapes."""
    return [
        {"role": "system", "content": "You describe images."},
        {
            "role": "user",
            "content": [
                {"type": "image_url", "image_url": {"url": data_uri(11), "detail": "high"}},
                {"type": "text", "text": "and this one?"},
            ],
        },
        {"role": "assistant", "content": "A blue rectangle."},
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "compare"},
                {"type": "image_url", "image_url": data_uri(1200, 600, "JPEG")},
                {"type": "text", "text": "with"},
                {"type": "input_image", "image_url": data_uri(13, fmt="WEBP"), "detail": "low"},
                {"type": "input_image", "image_url": {"url": data_uri(900, 300), "detail": "low"}},
            ],
        },
    ]


def collect(messages: Any, policy: MediaPolicy | None = None) -> list[LoadedImage]:
    return asyncio.run(ImageSource().collect_images(messages, policy or MediaPolicy()))


def refuse(messages: Any, code: str, policy: MediaPolicy | None = None) -> InvalidRequestError:
    with pytest.raises(InvalidRequestError) as info:
        collect(messages, policy)
    assert info.value.code == code, info.value.message
    return info.value


def user(*parts: dict[str, Any]) -> list[dict[str, Any]]:
    return [{"role": "user", "content": list(parts)}]


def image(url: str) -> dict[str, Any]:
    return {"type": "image_url", "image_url": {"url": url}}


@pytest.mark.parametrize("form", ["models", "dicts"])
def test_every_turn_every_shape_in_order(form: str) -> None:
    messages: Any = MESSAGES.validate_python(conversation())
    if form == "dicts":
        messages = [m.model_dump(exclude_none=True) for m in messages]
    loaded = collect(messages)
    assert [img.param for img in loaded] == [
        "messages[1].content[0].image_url",
        "messages[3].content[1].image_url",
        "messages[3].content[3].image_url",
        "messages[3].content[4].image_url",
    ]
    assert [img.format for img in loaded] == ["PNG", "JPEG", "WEBP", "PNG"]
    assert [img.detail for img in loaded] == ["high", "auto", "low", "low"]
    assert [img.size for img in loaded] == [(11, 10), (1200, 600), (13, 10), (512, 171)]
    assert loaded[3].original_size == (900, 300)
    assert all(img.image.mode == "RGB" for img in loaded)


def test_image_parts_lists_params_without_loading() -> None:
    found = image_parts(conversation())
    assert [param for param, _ in found][:2] == [
        "messages[1].content[0].image_url",
        "messages[3].content[1].image_url",
    ]


def test_text_only_conversation_has_no_images() -> None:
    assert collect([{"role": "user", "content": "hi"}]) == []


def test_image_limit_counts_every_turn_before_loading_anything() -> None:
    bad = image("data:image/png;base64,!!!")  # would fail if it were loaded
    messages = [*user(image(data_uri(5)), bad), {"role": "assistant", "content": "ok"}]
    messages += user(image(data_uri(6)))
    error = refuse(messages, TOO_MANY_IMAGES, MediaPolicy(max_images=2))
    assert error.param == "messages"
    assert "3 images" in error.message and "at most 2" in error.message
    messages[0]["content"].remove(bad)
    assert len(collect(messages, MediaPolicy(max_images=2))) == 2


def test_zero_images_allowed() -> None:
    refuse(user(image(data_uri(5))), TOO_MANY_IMAGES, MediaPolicy(max_images=0))


@pytest.mark.parametrize(
    "url",
    [
        "file:///etc/passwd",
        "FILE:///etc/passwd",
        "ftp://example.com/cat.png",
        "gopher://example.com/",
        "javascript:alert(1)",
        "/relative/cat.png",
        "cat.png",
        "blob:https://example.com/1234",
    ],
)
def test_other_schemes_are_refused(url: str) -> None:
    error = refuse(user({"type": "text", "text": "x"}, image(url)), INVALID_IMAGE_URL)
    assert error.param == "messages[0].content[1].image_url"
    assert error.param in error.message
    assert error.status_code == 400


def test_error_names_the_part_and_not_the_payload() -> None:
    payload = "TOPSECRET" * 10 + "%%%"
    messages = user(image(data_uri(5)), image(f"data:image/png;base64,{payload}"))
    error = refuse(messages, INVALID_IMAGE)
    assert error.param == "messages[0].content[1].image_url"
    assert "base64" in error.message
    assert "TOPSECRET" not in error.message


def test_earliest_failing_image_is_reported() -> None:
    messages = user(
        image(data_uri(5)),
        image("data:text/plain;base64,aGk="),
        image("data:image/png;base64,!!!"),
    )
    assert refuse(messages, INVALID_IMAGE).param == "messages[0].content[1].image_url"


def test_malformed_part_dict_is_refused() -> None:
    error = refuse(user({"type": "image_url", "image_url": {"detail": "low"}}), INVALID_IMAGE_URL)
    assert error.param == "messages[0].content[0].image_url"


def test_load_single_part_model() -> None:
    part = MESSAGES.validate_python(conversation())[3].content[3]  # type: ignore[union-attr,index]
    loaded = asyncio.run(ImageSource().load(part, MediaPolicy(), param="p"))
    assert loaded.param == "p" and loaded.detail == "low" and loaded.format == "WEBP"


# -- pixels per request ----------------------------------------------------------------------------


def truncated_png_uri(width: int, height: int) -> str:
    """A PNG whose header is whole but whose pixels are cut off: it fails only when decoded."""
    buf = io.BytesIO()
    Image.effect_noise((width, height), 64).save(buf, "PNG")
    cut = buf.getvalue()[: len(buf.getvalue()) // 2]
    return f"data:image/png;base64,{base64.b64encode(cut).decode()}"


def test_the_images_of_a_request_share_one_pixel_budget_checked_before_decoding() -> None:
    messages = user(
        image(data_uri(20, 20)), image(data_uri(20, 20)), image(truncated_png_uri(20, 20))
    )
    error = refuse(messages, IMAGE_TOO_LARGE, MediaPolicy(max_request_pixels=1199))
    assert error.param == "messages"
    assert "1,200 pixels" in error.message
    # Within the budget, the truncated image is decoded, and only then refused.
    refuse(messages, INVALID_IMAGE, MediaPolicy(max_request_pixels=1200))


def test_images_are_decoded_to_fit_the_policys_side() -> None:
    loaded = collect(user(image(data_uri(1000, 250))), MediaPolicy(max_side=400))
    assert loaded[0].size == (400, 100)
    assert loaded[0].original_size == (1000, 250)
