"""Chat messages into prompt tokens for one served model, with its own chat template."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pampero.chat import ChatTemplate, tokenize_rendered
from pampero.errors import InvalidRequestError
from pampero.protocol.messages import ChatTemplateFields
from pampero.serving.hub import ServedModel
from pampero.settings import Settings


@dataclass(frozen=True)
class RenderedChat:
    text: str
    tokens: list[int]


class Prompter:
    """Compiles a model's chat template once and renders requests with it."""

    def __init__(self, served: ServedModel, settings: Settings) -> None:
        engine = served.engine
        self.tokenizer = engine.tokenizer
        override = served.config.chat_template
        source = (
            Path(override).expanduser().read_text(encoding="utf-8")
            if override
            else engine.chat_template
        )
        self.model_id = served.id
        self.source = source
        self.template = (
            ChatTemplate(
                source,
                bos_token=self.tokenizer.bos_text or "",
                eos_token=self.tokenizer.eos_text or "",
                model_id=served.id,
                timeout=settings.template_timeout,
            )
            if source
            else None
        )

    def chat_tokens(self, request: ChatTemplateFields) -> list[int]:
        return self.render(request).tokens

    def render(self, request: ChatTemplateFields, image_marker: str | None = None) -> RenderedChat:
        """Render and tokenize. With ``image_marker``, image parts render as that marker and
        become ``IMAGE_PLACEHOLDER_ID`` tokens; without it they are refused (text-only)."""
        if self.template is None:
            raise InvalidRequestError(
                f"model {self.model_id} has no chat template; use /v1/completions, or give it "
                "a template with 'chat_template' in the server's model config",
                param="messages",
            )
        messages = [m.model_dump(exclude_none=True) for m in request.messages]
        tools = _tools(request)
        rendered = self.template.render(
            messages,
            tools=tools,
            documents=request.documents,
            add_generation_prompt=request.add_generation_prompt,
            continue_final_message=request.continue_final_message,
            template_kwargs=_template_kwargs(request),
            media=(lambda _part, _param: image_marker) if image_marker else None,
        )
        add_special = bool(getattr(request, "add_special_tokens", False))
        tokens = tokenize_rendered(
            rendered, self.tokenizer, add_special=add_special, image_marker=image_marker
        )
        return RenderedChat(rendered.text, tokens)

    def unused_fields(self, request: ChatTemplateFields) -> list[str]:
        """Fields sent for the template that this model's template never reads (vLLM hands
        ``reasoning_effort`` to the template; one that does not mention it ignores it)."""
        effort = getattr(request, "reasoning_effort", None)
        if effort is not None and "reasoning_effort" not in (self.source or ""):
            return ["reasoning_effort"]
        return []


def _template_kwargs(request: ChatTemplateFields) -> dict[str, Any] | None:
    """The client's template kwargs, plus ``reasoning_effort`` as vLLM passes it (a value in
    ``chat_template_kwargs`` wins)."""
    kwargs = request.chat_template_kwargs
    effort = getattr(request, "reasoning_effort", None)
    if effort is None or (kwargs and "reasoning_effort" in kwargs):
        return kwargs
    return {**(kwargs or {}), "reasoning_effort": effort}


def _tools(request: ChatTemplateFields) -> list[dict[str, Any]] | None:
    """The tools the template lists. With ``tool_choice: "none"`` it lists none, as vLLM's
    ``--exclude-tools-when-tool-choice-none`` does: a model shown tools writes calls, and with
    calls neither parsed nor allowed they would come back as JSON in ``content``."""
    if getattr(request, "resolved_tool_choice", None) == "none":
        return None
    tools = getattr(request, "tools", None)
    if tools:
        return [t.model_dump(exclude_none=True) for t in tools]
    functions = getattr(request, "functions", None)
    if functions:
        return [
            {"type": "function", "function": f.model_dump(exclude_none=True)} for f in functions
        ]
    return None
