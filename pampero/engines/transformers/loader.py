"""Load a Hugging Face causal LM or vision-language model from a local directory.

Nothing is ever downloaded (``local_files_only``). A model whose type transformers lists for
image-text-to-text and whose config has a ``vision_config`` loads with
``AutoModelForImageTextToText`` and its processor; anything else with ``AutoModelForCausalLM``.
Weights go to CUDA when it is available (in the checkpoint's dtype), else to the CPU in float32.

Processors: transformers' processors for video-capable models (Qwen2-VL, SmolVLM, ...) insist on a
video processor, and video processors need torchvision. Without it ``AutoProcessor`` fails, so the
processor is rebuilt from the tokenizer and the image processor with no video processor; images
work the same, videos are not offered anyway.

The model's own generation config is replaced by a neutral one (its end tokens are kept for
``HFTokenizer.eog_token_ids``): every sampling parameter comes from the request, and a shipped
``repetition_penalty`` or ``top_k`` must not silently apply.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pampero.engines.transformers.tokenizer import HFTokenizer
from pampero.errors import EngineError

log = logging.getLogger(__name__)

# Strings a client cannot send as one message part: they find the image placeholder in the
# chat template's output.
_BEFORE, _AFTER = "\x00pampero-before\x00", "\x00pampero-after\x00"


@dataclass
class LoadedModel:
    """A loaded model and what the engine needs around it."""

    model: Any
    tokenizer: HFTokenizer
    processor: Any | None  # tokenizer + image processor; None for a text-only model
    image_placeholder: str | None  # the text the chat template writes for one image
    chat_template: str | None
    context_length: int
    device: Any  # torch.device
    pad_token_id: int

    @property
    def supports_images(self) -> bool:
        return self.processor is not None and self.image_placeholder is not None


def load_model(path: Path, *, n_ctx: int, threads: int) -> LoadedModel:
    """Load the model directory ``path``; ``n_ctx`` caps the context (the model's own limit
    applies too)."""
    import torch
    from transformers import AutoConfig, AutoTokenizer, GenerationConfig

    if not (path / "config.json").is_file():
        raise EngineError(f"{path} is not a Hugging Face model directory (no config.json)")
    config = AutoConfig.from_pretrained(path, local_files_only=True)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.type == "cpu":
        torch.set_num_threads(threads)
    vision = _is_vision_language(config)
    auto = _auto_model_class(vision)
    dtype: Any = "auto" if device.type == "cuda" else torch.float32
    model = auto.from_pretrained(path, local_files_only=True, dtype=dtype).to(device).eval()
    hf_tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
    if hf_tokenizer.pad_token_id is None:  # batching several images pads their placeholders
        hf_tokenizer.pad_token = hf_tokenizer.eos_token
    eog = _end_ids(model.generation_config)
    model.generation_config = GenerationConfig(  # type: ignore[no-untyped-call]
        bos_token_id=model.generation_config.bos_token_id,
        pad_token_id=hf_tokenizer.pad_token_id,
    )
    tokenizer = HFTokenizer(hf_tokenizer, vocab_size=_logits_width(model, config), eog_ids=eog)
    processor = _processor(path, config, hf_tokenizer) if vision else None
    template = getattr(processor, "chat_template", None) or hf_tokenizer.chat_template
    text_config = config.get_text_config()
    limit = getattr(text_config, "max_position_embeddings", None) or n_ctx
    return LoadedModel(
        model=model,
        tokenizer=tokenizer,
        processor=processor,
        image_placeholder=_image_placeholder(hf_tokenizer, processor, template),
        chat_template=template,
        context_length=min(n_ctx, int(limit)),
        device=device,
        pad_token_id=int(hf_tokenizer.pad_token_id),
    )


def _is_vision_language(config: Any) -> bool:
    from transformers.models.auto.modeling_auto import MODEL_FOR_IMAGE_TEXT_TO_TEXT_MAPPING_NAMES

    return (
        config.model_type in MODEL_FOR_IMAGE_TEXT_TO_TEXT_MAPPING_NAMES
        and getattr(config, "vision_config", None) is not None
    )


def _auto_model_class(vision: bool) -> Any:
    from transformers import AutoModelForCausalLM, AutoModelForImageTextToText

    return AutoModelForImageTextToText if vision else AutoModelForCausalLM


def _end_ids(generation_config: Any) -> list[int]:
    eos = generation_config.eos_token_id
    if eos is None:
        return []
    return [int(eos)] if isinstance(eos, int) else [int(e) for e in eos]


def _logits_width(model: Any, config: Any) -> int:
    head = model.get_output_embeddings()
    if head is not None and getattr(head, "weight", None) is not None:
        return int(head.weight.shape[0])
    return int(config.get_text_config().vocab_size)


def _processor(path: Path, config: Any, tokenizer: Any) -> Any:
    from transformers import AutoImageProcessor, AutoProcessor

    try:
        loaded = AutoProcessor.from_pretrained(  # type: ignore[no-untyped-call]
            path, local_files_only=True
        )
    except (ImportError, ValueError, AttributeError, OSError, TypeError) as exc:
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        log.info("AutoProcessor failed for %s (%s); building it without video", path, reason)
        loaded = None
    if loaded is not None and getattr(loaded, "image_processor", None) is not None:
        return loaded
    image_processor = AutoImageProcessor.from_pretrained(  # type: ignore[no-untyped-call,unused-ignore]
        path, local_files_only=True
    )
    processor_class = _images_only(_processor_class(config))
    fields = {name: None for name in processor_class.get_attributes()}
    fields.update(image_processor=image_processor, tokenizer=tokenizer)
    return processor_class(**fields, chat_template=tokenizer.chat_template)


def _processor_class(config: Any) -> Any:
    import transformers
    from transformers.models.auto.auto_mappings import PROCESSOR_MAPPING_NAMES

    name = PROCESSOR_MAPPING_NAMES.get(config.model_type)
    if not name:
        raise EngineError(f"transformers knows no processor for model type {config.model_type}")
    return getattr(transformers, name)


def _images_only(processor_class: Any) -> Any:
    """``processor_class`` accepting ``None`` for the sub-processors images do not need."""

    class ImagesOnly(processor_class):  # type: ignore[misc]
        def check_argument_for_proper_class(self, argument_name: str, argument: Any) -> Any:
            if argument is None and argument_name not in ("image_processor", "tokenizer"):
                return None
            return super().check_argument_for_proper_class(argument_name, argument)

    ImagesOnly.__name__ = ImagesOnly.__qualname__ = processor_class.__name__
    return ImagesOnly


def _image_placeholder(tokenizer: Any, processor: Any | None, template: str | None) -> str | None:
    """The text the model's chat template writes for one image (e.g. Qwen2-VL's
    ``<|vision_start|><|image_pad|><|vision_end|>``, SmolVLM's ``<image>``); the processor
    expands it into the image's tokens."""
    if processor is None:
        return None
    fallback = getattr(processor, "image_token", None)
    if template is None:
        return fallback
    parts = [
        {"type": "text", "text": _BEFORE},
        {"type": "image"},
        {"type": "text", "text": _AFTER},
    ]
    try:
        rendered = tokenizer.apply_chat_template(
            [{"role": "user", "content": parts}], chat_template=template, tokenize=False
        )
    except Exception as exc:  # a template that cannot render parts: use the processor's token
        log.info("chat template did not render an image part (%s)", exc)
        return fallback
    start, end = rendered.find(_BEFORE), rendered.find(_AFTER)
    if start < 0 or end < 0:
        return fallback
    between = rendered[start + len(_BEFORE) : end].strip()
    return between or fallback
