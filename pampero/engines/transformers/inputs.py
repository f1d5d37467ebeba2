"""A request's prompt tokens and images, as the model's forward pass wants them.

Each ``IMAGE_PLACEHOLDER_ID`` in the prompt is replaced by what the model's processor makes of
its image placeholder text (``LoadedModel.image_placeholder``) and that image: for Qwen2-VL
``<|vision_start|>``, one ``<|image_pad|>`` per merged patch, ``<|vision_end|>``. All images of
a request go through the processor in one call, one image per batch row, so the pixel tensors
come out in the layout the model takes for several images; the rows' token ids are then spliced
into the prompt in order.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pampero.engines.transformers.loader import LoadedModel
from pampero.errors import InvalidRequestError
from pampero.inference import IMAGE_PLACEHOLDER_ID

if TYPE_CHECKING:
    from PIL import Image

# Per-token keys the processor returns for its own (placeholder-only) rows; rebuilt for the
# whole prompt.
_TEXT_KEYS = frozenset({"input_ids", "attention_mask", "token_type_ids", "mm_token_type_ids"})


@dataclass
class ModelInputs:
    tensors: dict[str, Any]  # keyword arguments of the model's forward / generate
    token_ids: list[int]  # the prompt with every image expanded

    @property
    def n_tokens(self) -> int:
        return len(self.token_ids)


def build_inputs(
    loaded: LoadedModel, prompt_tokens: Sequence[int], images: Sequence[Image.Image]
) -> ModelInputs:
    import torch

    slots = sum(1 for t in prompt_tokens if t == IMAGE_PLACEHOLDER_ID)
    if slots != len(images):
        raise InvalidRequestError(
            f"the prompt has {slots} image places but {len(images)} images were given",
            param="messages",
        )
    token_ids = list(prompt_tokens)
    pixels: dict[str, Any] = {}
    if images:
        expansions, pixels, typed = _expand_images(loaded, images)
        token_ids = _splice(prompt_tokens, expansions)
    ids = torch.tensor([token_ids], dtype=torch.long)
    tensors: dict[str, Any] = {"input_ids": ids, "attention_mask": torch.ones_like(ids), **pixels}
    if images and typed and loaded.processor is not None:
        # M-RoPE models find the image tokens by modality type
        types = loaded.processor.create_mm_token_type_ids([token_ids])
        tensors["mm_token_type_ids"] = torch.tensor(types, dtype=torch.long)
    dtype = loaded.model.dtype
    return ModelInputs(
        tensors={
            key: value.to(loaded.device, dtype=dtype if value.is_floating_point() else None)
            for key, value in tensors.items()
        },
        token_ids=token_ids,
    )


def _expand_images(
    loaded: LoadedModel, images: Sequence[Image.Image]
) -> tuple[list[list[int]], dict[str, Any], bool]:
    """Each image's token ids, the pixel tensors of all of them, and whether the processor
    marks modality types."""
    processor, placeholder = loaded.processor, loaded.image_placeholder
    if processor is None or placeholder is None:
        raise InvalidRequestError("this model does not accept image input", param="messages")
    batch = processor(
        text=[placeholder] * len(images),
        images=[[image.convert("RGB")] for image in images],
        return_tensors="pt",
        padding=len(images) > 1,
        add_special_tokens=False,
    )
    expansions = [
        [int(t) for t, keep in zip(row.tolist(), mask.tolist(), strict=True) if keep]
        for row, mask in zip(batch["input_ids"], batch["attention_mask"], strict=True)
    ]
    pixels = {k: v for k, v in batch.items() if k not in _TEXT_KEYS}
    return expansions, pixels, "mm_token_type_ids" in batch


def _splice(prompt_tokens: Sequence[int], expansions: list[list[int]]) -> list[int]:
    out: list[int] = []
    pending = iter(expansions)
    for token in prompt_tokens:
        if token == IMAGE_PLACEHOLDER_ID:
            out += next(pending)
        else:
            out.append(token)
    return out
