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
from importlib.metadata import entry_points

from pampero.parsers.base import ReasoningParserFactory, ToolParserFactory
from pampero.registry import Registry

TOOL_PARSER_GROUP = "pampero.tool_parsers"
REASONING_PARSER_GROUP = "pampero.reasoning_parsers"


@functools.cache
def _plugins(group: str) -> tuple[tuple[str, str], ...]:
    return tuple((entry.name, entry.value) for entry in entry_points(group=group))


_TOOL_PARSERS: Registry[ToolParserFactory] = Registry(
    "tool parser",
    TOOL_PARSER_GROUP,
    {
        "hermes": "pampero.parsers.hermes:HermesToolParser",
        "llama3_json": "pampero.parsers.llama3:Llama3JsonToolParser",
        "mistral": "pampero.parsers.mistral:MistralToolParser",
    },
    plugins=_plugins,
)
_REASONING_PARSERS: Registry[ReasoningParserFactory] = Registry(
    "reasoning parser",
    REASONING_PARSER_GROUP,
    {
        "think": "pampero.parsers.think:ThinkReasoningParser",
        # vLLM's names, for configurations carried over; qwen3 is plain <think>.
        "qwen3": "pampero.parsers.think:ThinkReasoningParser",
        "deepseek_r1": "pampero.parsers.think:DeepSeekR1ReasoningParser",
    },
    plugins=_plugins,
)


def available_tool_parsers() -> dict[str, str]:
    """Every tool parser name with the ``module:attr`` that provides it."""
    return _TOOL_PARSERS.available()


def available_reasoning_parsers() -> dict[str, str]:
    """Every reasoning parser name with the ``module:attr`` that provides it."""
    return _REASONING_PARSERS.available()


def tool_parser(name: str) -> ToolParserFactory:
    """The tool parser class registered as ``name``."""
    return _TOOL_PARSERS.load(name)


def reasoning_parser(name: str) -> ReasoningParserFactory:
    """The reasoning parser class registered as ``name``."""
    return _REASONING_PARSERS.load(name)


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
