"""The Jinja environment chat templates run in.

Chat templates are written for Hugging Face transformers' ``apply_chat_template``, so the
environment matches it: an ``ImmutableSandboxedEnvironment`` with ``trim_blocks`` and
``lstrip_blocks``, the ``loopcontrols`` extension, the ``{% generation %}`` block (rendered as its
body: pampero never needs the assistant mask it exists for), ``raise_exception(message)``,
``strftime_now(format)``, and HF's ``tojson`` (no HTML escaping; ``indent``, ``separators``,
``sort_keys`` and ``ensure_ascii`` arguments).

On top of the sandbox, every intercepted operation counts against the render budget
(``pampero.chat.budget``) and ``range`` is metered.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any, NoReturn

from jinja2 import nodes
from jinja2.ext import Extension, loopcontrols
from jinja2.parser import Parser
from jinja2.runtime import Context, Undefined
from jinja2.sandbox import ImmutableSandboxedEnvironment

from pampero.chat import budget
from pampero.errors import InvalidRequestError


def raise_exception(message: str) -> NoReturn:
    """What a template calls to refuse a conversation (e.g. roles that do not alternate)."""
    raise InvalidRequestError(str(message), param="messages")


def strftime_now(fmt: str) -> str:
    return datetime.now().strftime(fmt)


def hf_tojson(
    value: Any,
    ensure_ascii: bool = False,
    indent: int | str | None = None,
    separators: tuple[str, str] | None = None,
    sort_keys: bool = False,
) -> str:
    # Jinja's own ``tojson`` escapes ``<``, ``>``, ``&`` and ``'`` for HTML, which would change
    # every prompt that shows a JSON schema to the model.
    return json.dumps(
        value, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys
    )


class GenerationBlock(Extension):
    """``{% generation %}...{% endgeneration %}``: HF marks assistant text with it; pampero
    renders the body and ignores the mark."""

    tags = {"generation"}  # noqa: RUF012 - Jinja reads this class attribute as is

    def parse(self, parser: Parser) -> list[nodes.Node]:
        next(parser.stream)
        return parser.parse_statements(("name:endgeneration",), drop_needle=True)


class ChatSandbox(ImmutableSandboxedEnvironment):
    """HF-compatible sandbox whose operations count against the active render budget."""

    intercepted_binops = frozenset({"*", "**"})

    def __init__(self) -> None:
        super().__init__(
            trim_blocks=True, lstrip_blocks=True, extensions=[loopcontrols, GenerationBlock]
        )
        self.filters["tojson"] = hf_tojson
        self.globals["raise_exception"] = raise_exception
        self.globals["strftime_now"] = strftime_now
        self.globals["range"] = budget.metered_range

    def getattr(self, obj: Any, attribute: str) -> Any | Undefined:
        budget.tick()
        return super().getattr(obj, attribute)

    def getitem(self, obj: Any, argument: str | Any) -> Any | Undefined:
        budget.tick()
        return super().getitem(obj, argument)

    def call(self, context: Context, func: Any, /, *args: Any, **kwargs: Any) -> Any:
        budget.tick()
        budget.guard_call(func, args)
        return super().call(context, func, *args, **kwargs)

    def call_binop(self, context: Context, operator: str, left: Any, right: Any) -> Any:
        budget.guard_binop(operator, left, right)
        return super().call_binop(context, operator, left, right)


def string_constants(ast: nodes.Template) -> frozenset[str]:
    """Every string literal and piece of literal template text in a parsed template."""
    found = {node.value for node in ast.find_all(nodes.Const) if isinstance(node.value, str)}
    found.update(node.data for node in ast.find_all(nodes.TemplateData))
    return frozenset(found)
