"""A rendered chat prompt, and what it remembers of the client data it was rendered from."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any, NamedTuple

from pampero.chat import provenance
from pampero.chat.specials import special_texts_for


class Span(NamedTuple):
    """Characters ``text[start:end]`` of a rendered prompt."""

    start: int
    end: int


class RenderedPrompt:
    """The prompt text a chat template produced for one request.

    ``text`` is what the model reads. The prompt also keeps the client-supplied data it was
    rendered from (messages, tools, documents, template kwargs) and a way to render that data
    again with every client string rewritten, which is how ``client_control_spans`` tells the
    template's own control tokens from control-token text the client typed (see
    ``pampero.chat.provenance``).
    """

    __slots__ = ("_client", "_rerender", "_spans", "text")

    def __init__(
        self, text: str, client: Mapping[str, Any], rerender: Callable[[Mapping[str, Any]], str]
    ) -> None:
        self.text = text
        self._client = client
        self._rerender = rerender
        self._spans: dict[frozenset[str], tuple[Span, ...]] = {}

    def __repr__(self) -> str:
        return f"RenderedPrompt({self.text!r})"

    def client_strings(self) -> Iterator[str]:
        """Every string the client supplied (values and object keys), in no particular order."""
        return iter_strings(self._client)

    def render_shadow(self, rewrite: Callable[[str], str]) -> str:
        """This prompt rendered again with ``rewrite`` applied to every client string."""
        return self._rerender(map_strings(self._client, rewrite))

    def client_control_spans(self, special_texts: Iterable[str]) -> tuple[Span, ...]:
        """The spans of ``text`` that hold control-token text the client supplied.

        ``special_texts`` is the tokenizer's control-token texts; sorted, non-overlapping spans.
        """
        key = frozenset(special_texts)
        spans = self._spans.get(key)
        if spans is None:
            found = provenance.client_control_spans(self, special_texts_for(key))
            spans = self._spans[key] = tuple(Span(start, end) for start, end in found)
        return spans


def iter_strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, Mapping):
        for key, item in value.items():
            if isinstance(key, str):
                yield key
            yield from iter_strings(item)
    elif isinstance(value, list | tuple):
        for item in value:
            yield from iter_strings(item)


def map_strings(value: Any, rewrite: Callable[[str], str]) -> Any:
    """A copy of a JSON-like value with ``rewrite`` applied to every string and object key."""
    if isinstance(value, str):
        return rewrite(value)
    if isinstance(value, Mapping):
        return {
            (rewrite(k) if isinstance(k, str) else k): map_strings(v, rewrite)
            for k, v in value.items()
        }
    if isinstance(value, list | tuple):
        return [map_strings(item, rewrite) for item in value]
    return value
