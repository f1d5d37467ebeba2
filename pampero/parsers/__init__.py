"""Output parsing: tool calls and reasoning out of generated text, streaming-first.

- :mod:`~pampero.parsers.base`: the types (``ParsedDelta``, ``ToolParser``, ``ReasoningParser``)
  and the decisions every parser shares;
- :mod:`~pampero.parsers.registry`: parsers by name, and their choice from a chat template;
- :mod:`~pampero.parsers.pipeline`: reasoning and tool parsing together, for serving;
- one module per format: ``hermes``, ``llama3``, ``mistral``, ``think``; ``jsonscan`` and
  ``calls`` are the incremental JSON reading they share.
"""

from pampero.parsers.base import (
    ParsedDelta,
    ParsedMessage,
    ReasoningParser,
    ReasoningParserFactory,
    ToolCall,
    ToolCallDelta,
    ToolParser,
    ToolParserFactory,
    fold,
    new_call_id,
    parse_all,
)
from pampero.parsers.pipeline import OutputParser, create_output_parser
from pampero.parsers.registry import (
    available_reasoning_parsers,
    available_tool_parsers,
    detect_reasoning_parser,
    detect_tool_parser,
    reasoning_parser,
    tool_parser,
)

__all__ = [
    "OutputParser",
    "ParsedDelta",
    "ParsedMessage",
    "ReasoningParser",
    "ReasoningParserFactory",
    "ToolCall",
    "ToolCallDelta",
    "ToolParser",
    "ToolParserFactory",
    "available_reasoning_parsers",
    "available_tool_parsers",
    "create_output_parser",
    "detect_reasoning_parser",
    "detect_tool_parser",
    "fold",
    "new_call_id",
    "parse_all",
    "reasoning_parser",
    "tool_parser",
]
