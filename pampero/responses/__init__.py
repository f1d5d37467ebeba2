"""OpenAI's Responses API (``/v1/responses``), built on the chat backend seam.

A Responses request is translated into a chat completion request (``translate``), answered by
whichever ``ChatBackend`` serves its model (local or upstream alike), and the chat chunks are
turned into the Response object and its stream events (``events``). Responses are kept in a
bounded in-memory store (``store``) for ``previous_response_id``, ``GET`` and ``DELETE``.

Modules: ``protocol`` (the request model), ``translate`` (request → chat request),
``events`` (chat chunks → events and Response), ``store``, ``service`` (the use case).
"""

from pampero.responses.protocol import CreateResponseRequest, parse_response_request
from pampero.responses.service import ResponsesReply, ResponsesService
from pampero.responses.store import ResponseStore

__all__ = [
    "CreateResponseRequest",
    "ResponseStore",
    "ResponsesReply",
    "ResponsesService",
    "parse_response_request",
]
