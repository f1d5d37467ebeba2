"""Tool-call and reasoning parsers by name, and the choice of both from a chat template.

Built-ins register exactly as a plugin would: entry point groups ``pampero.tool_parsers`` and
``pampero.reasoning_parsers``, value ``module:attr`` naming the parser class (a
``ToolParserFactory`` or a ``ReasoningParserFactory``); it is imported only when chosen. A
plugin may not replace a built-in name. Entry points are read once per process (reading them
takes milliseconds, and a parser is chosen for every request).

Example::

    name = settings_value or detect_tool_parser(chat_template)      # "hermes"
    parser = tool_parser(name)()
"""

from __future__ import annotations

import functools
import importlib
from importlib.metadata import entry_points
from typing import cast

from pampero.errors import InvalidRequestError
from pampero.parsers.base import ReasoningParserFactory, ToolParserFactory

TOOL_PARSER_GROUP = "pampero.tool_parsers"
REASONING_PARSER_GROUP = "pampero.reasoning_parsers"

_BUILTIN_TOOL_PARSERS: dict[str, str] = {
    "hermes": "pampero.parsers.hermes:HermesToolParser",
    "llama3_json": "pampero.parsers.llama3:Llama3JsonToolParser",
    "mistral": "pampero.parsers.mistral:MistralToolParser",
}
_BUILTIN_REASONING_PARSERS: dict[str, str] = {
    "think": "pampero.parsers.think:ThinkReasoningParser",
    # vLLM's names, for configurations carried over; qwen3 is plain <think>.
    "qwen3": "pampero.parsers.think:ThinkReasoningParser",
    "deepseek_r1": "pampero.parsers.think:DeepSeekR1ReasoningParser",
}


def available_tool_parsers() -> dict[str, str]:
    """Every tool parser name with the ``module:attr`` that provides it."""
    return _available(_BUILTIN_TOOL_PARSERS, TOOL_PARSER_GROUP)


def available_reasoning_parsers() -> dict[str, str]:
    """Every reasoning parser name with the ``module:attr`` that provides it."""
    return _available(_BUILTIN_REASONING_PARSERS, REASONING_PARSER_GROUP)


def tool_parser(name: str) -> ToolParserFactory:
    """The tool parser class registered as ``name``."""
    return cast(ToolParserFactory, _load(name, available_tool_parsers(), "tool_parser"))


def reasoning_parser(name: str) -> ReasoningParserFactory:
    """The reasoning parser class registered as ``name``."""
    found = _load(name, available_reasoning_parsers(), "reasoning_parser")
    return cast(ReasoningParserFactory, found)


def detect_tool_parser(chat_template: str) -> str | None:
    """The built-in tool parser for the format a chat template teaches, or ``None``.

    Checked most specific first: Mistral's ``[TOOL_CALLS]`` token, Hermes/Qwen's
    ``<tool_call>`` tag, then Llama 3.x's ``<|python_tag|>``, or its ``ipython`` role with
    ``"parameters"`` in the call format it describes. Qwen3-Coder's ``<tool_call>`` wraps XML
    (``<function=name>``), not JSON: no built-in parser reads it.
    """
    if "[TOOL_CALLS]" in chat_template:
        return "mistral"
    if "<tool_call>" in chat_template:
        return None if "<function=" in chat_template else "hermes"
    if "<|python_tag|>" in chat_template or (
        "ipython" in chat_template and '"parameters"' in chat_template
    ):
        return "llama3_json"
    return None


def detect_reasoning_parser(chat_template: str) -> str | None:
    """The built-in reasoning parser for a chat template, or ``None`` for a model that does not
    reason. A template that mentions ``<think>`` or ``</think>`` (Qwen3, QwQ, DeepSeek-R1 and
    its distillations, which split reasoning out of the history at ``</think>``) gets the think
    parser; DeepSeek's own templates (``<｜Assistant｜>``) get the variant that starts inside
    the reasoning.
    """
    if "<think>" not in chat_template and "</think>" not in chat_template:
        return None
    if "<｜Assistant｜>" in chat_template:
        return "deepseek_r1"
    return "think"


def _available(builtin: dict[str, str], group: str) -> dict[str, str]:
    found = dict(builtin)
    for name, value in _plugins(group):
        found.setdefault(name, value)
    return found


@functools.cache
def _plugins(group: str) -> tuple[tuple[str, str], ...]:
    return tuple((entry.name, entry.value) for entry in entry_points(group=group))


def _load(name: str, registered: dict[str, str], param: str) -> object:
    if name not in registered:
        kind = param.replace("_", " ")
        raise InvalidRequestError(
            f"unknown {kind} {name!r}; available: {', '.join(sorted(registered))}", param=param
        )
    module_name, _, attr = registered[name].partition(":")
    found: object = getattr(importlib.import_module(module_name), attr)
    return found
