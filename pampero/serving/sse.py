"""Server-sent events as OpenAI frames them: ``data: {json}\\n\\n`` ... ``data: [DONE]\\n\\n``.

Once a stream has started, its status line is already sent; a failure after that point is
reported in band as ``data: {"error": {...}}`` (which the openai SDK raises as an APIError),
never as a clean end of stream.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Mapping
from typing import Any

import orjson

from pampero.errors import EngineError, PamperoError

log = logging.getLogger(__name__)

DONE = b"data: [DONE]\n\n"


def event(payload: Mapping[str, Any]) -> bytes:
    """One SSE ``data:`` event carrying a JSON object."""
    return b"data: " + orjson.dumps(payload) + b"\n\n"


async def stream_errors(chunks: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    """Pass ``chunks`` through; turn a failure into an in-band error event and ``[DONE]``."""
    try:
        async for chunk in chunks:
            yield chunk
    except PamperoError as exc:
        yield event(exc.to_body())
        yield DONE
    except Exception as exc:  # an unexpected failure must still end the stream visibly
        log.exception("stream failed")
        yield event(EngineError(f"generation failed: {type(exc).__name__}").to_body())
        yield DONE
    finally:
        closer = getattr(chunks, "aclose", None)
        if closer is not None:
            await closer()
