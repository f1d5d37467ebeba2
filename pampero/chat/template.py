"""A model's chat template: compiled once, rendered per request under a budget.

Example::

    template = ChatTemplate(source, bos_token="", eos_token="<|im_end|>", model_id="qwen")
    prompt = template.render([{"role": "user", "content": "Hi"}])
    token_ids = tokenize_rendered(prompt, engine.tokenizer, add_special=False)

Rendering follows HF transformers and vLLM: the template sees ``messages`` (normalised by
``pampero.chat.messages``), ``tools``, ``documents`` (``None`` when absent or empty),
``add_generation_prompt``, ``bos_token``, ``eos_token`` and the allow-listed
``chat_template_kwargs``. With ``continue_final_message`` the conversation is rendered with its
final assistant message and cut right after that message's text, so the model continues it.

Every failure is the client's 400: a template refusing the conversation (``raise_exception``),
a template crashing on it (undefined attribute, type error), or the render budget blown.
"""

from __future__ import annotations

import functools
from collections.abc import Generator, Iterable, Mapping
from types import TracebackType
from typing import Any, cast

from jinja2 import TemplateSyntaxError

from pampero.chat.budget import DEFAULT_MAX_OUTPUT_CHARS, DEFAULT_TIMEOUT_S, RenderBudget
from pampero.chat.environment import ChatSandbox, string_constants
from pampero.chat.messages import MediaPartHandler, normalize_messages, reject_media
from pampero.chat.prompt import RenderedPrompt
from pampero.errors import InvalidRequestError, PamperoError

DEFAULT_TEMPLATE_KWARGS = frozenset(
    {
        "enable_thinking",
        "thinking",
        "reasoning_effort",
        "add_vision_id",
        "tools_in_user_message",
        "date_string",
    }
)
# Names a client kwarg may never shadow: what pampero passes, what HF's apply_chat_template
# takes as its own arguments, and the environment's globals (``range`` is the metered one).
_RESERVED_NAMES = frozenset(
    {
        "messages",
        "conversation",
        "tools",
        "documents",
        "add_generation_prompt",
        "continue_final_message",
        "bos_token",
        "eos_token",
        "chat_template",
        "tokenize",
        "return_dict",
    }
)


class ChatTemplate:
    """One compiled chat template. Thread-safe: a render keeps no state on the instance."""

    def __init__(
        self,
        source: str,
        *,
        bos_token: str = "",
        eos_token: str = "",
        model_id: str | None = None,
        timeout: float = DEFAULT_TIMEOUT_S,
        max_output_chars: int = DEFAULT_MAX_OUTPUT_CHARS,
        extra_template_kwargs: Iterable[str] = (),
    ) -> None:
        env = ChatSandbox()
        try:
            ast = env.parse(source)
        except TemplateSyntaxError as exc:
            raise ValueError(
                f"The chat template does not compile: line {exc.lineno}: {exc}"
            ) from exc
        self._template = env.from_string(ast)
        self.bos_token = bos_token
        self.eos_token = eos_token
        self.model_id = model_id
        self.timeout = timeout
        self.max_output_chars = max_output_chars
        reserved = _RESERVED_NAMES | frozenset(env.globals)
        extra = frozenset(extra_template_kwargs)
        if extra & reserved:
            raise ValueError(
                f"chat_template_kwargs may not override {', '.join(sorted(extra & reserved))}."
            )
        self.allowed_template_kwargs = DEFAULT_TEMPLATE_KWARGS | extra
        self.knows_developer_role = "developer" in string_constants(ast)

    def render(
        self,
        messages: Any,
        *,
        tools: list[Any] | None = None,
        documents: list[Any] | None = None,
        add_generation_prompt: bool = True,
        continue_final_message: bool = False,
        template_kwargs: Mapping[str, Any] | None = None,
        media: MediaPartHandler | None = None,
    ) -> RenderedPrompt:
        """Render one request's conversation. ``media`` handles non-text content parts; by
        default they are refused, as this model reads text only."""
        if continue_final_message and add_generation_prompt:
            raise InvalidRequestError(
                "'continue_final_message' cannot be true together with 'add_generation_prompt'.",
                param="continue_final_message",
            )
        normalized = normalize_messages(
            messages,
            media=media or reject_media(self.model_id),
            developer_role=self.knows_developer_role,
        )
        if continue_final_message and normalized[-1]["role"] != "assistant":
            raise InvalidRequestError(
                "'continue_final_message' needs the last message to be an assistant message.",
                param="continue_final_message",
            )
        client: dict[str, Any] = {
            **self._checked_kwargs(template_kwargs),
            "messages": normalized,
            "tools": _optional_list(tools, "tools"),
            "documents": _optional_list(documents, "documents"),
        }
        rerender = functools.partial(
            self._render_client,
            add_generation_prompt=add_generation_prompt,
            continue_final_message=continue_final_message,
        )
        return RenderedPrompt(rerender(client), client, rerender)

    def _checked_kwargs(self, kwargs: Mapping[str, Any] | None) -> dict[str, Any]:
        if kwargs is None:
            return {}
        if not isinstance(kwargs, Mapping):
            raise InvalidRequestError(
                "'chat_template_kwargs' must be an object.", param="chat_template_kwargs"
            )
        for key in kwargs:
            if key not in self.allowed_template_kwargs:
                raise InvalidRequestError(
                    f"'chat_template_kwargs.{key}' is not accepted by this server; accepted: "
                    f"{', '.join(sorted(self.allowed_template_kwargs))}.",
                    param=f"chat_template_kwargs.{key}",
                )
        return dict(kwargs)

    def _render_client(
        self,
        client: Mapping[str, Any],
        *,
        add_generation_prompt: bool,
        continue_final_message: bool,
    ) -> str:
        text = self._render_text(
            {
                **client,
                "bos_token": self.bos_token,
                "eos_token": self.eos_token,
                "add_generation_prompt": add_generation_prompt,
            }
        )
        if continue_final_message:
            return _cut_after_final(text, client["messages"][-1]["content"])
        return text

    def _render_text(self, variables: dict[str, Any]) -> str:
        budget = RenderBudget(self.timeout, self.max_output_chars)
        parts: list[str] = []
        # ``generate`` is a generator function; closing it stops a render the budget cut short.
        chunks = cast(Generator[str, None, None], self._template.generate(variables))
        try:
            with budget.active():
                for chunk in chunks:
                    budget.emit(len(chunk))
                    parts.append(chunk)
        except PamperoError:
            raise
        except Exception as exc:
            raise InvalidRequestError(
                f"The chat template{_of(self.model_id)} cannot render this conversation: "
                f"{_describe(exc)}",
                param="messages",
            ) from exc
        finally:
            chunks.close()
        return "".join(parts)


def _optional_list(value: Any, param: str) -> list[Any] | None:
    if value is None:
        return None
    if not isinstance(value, list) or not all(isinstance(item, Mapping) for item in value):
        raise InvalidRequestError(f"'{param}' must be an array of objects.", param=param)
    return value or None


def _cut_after_final(text: str, final: str) -> str:
    """The rendered text up to the end of the final message's content (HF's rule)."""
    stripped = final.strip()
    if not stripped:
        raise InvalidRequestError(
            "'continue_final_message' needs text in the final assistant message.",
            param="messages",
        )
    at = text.rfind(stripped)
    if at < 0:
        raise InvalidRequestError(
            "The chat template changes the final assistant message, so it cannot be continued.",
            param="continue_final_message",
        )
    lead = final.lstrip()
    # Keep the message's own trailing whitespace when the template kept it.
    return text[: at + (len(lead) if text.startswith(lead, at) else len(stripped))]


def _of(model_id: str | None) -> str:
    return f" of model {model_id}" if model_id else ""


def _describe(exc: Exception) -> str:
    line = _template_line(exc.__traceback__)
    where = f" (template line {line})" if line is not None else ""
    return f"{type(exc).__name__}: {exc}{where}"


def _template_line(tb: TracebackType | None) -> int | None:
    # Jinja rewrites tracebacks so frames of template code carry the template's own line numbers.
    line = None
    while tb is not None:
        if tb.tb_frame.f_code.co_filename == "<template>":
            line = tb.tb_lineno
        tb = tb.tb_next
    return line
