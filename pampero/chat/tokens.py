"""Tokenizing a rendered chat prompt so that client text can never become a control token.

The template's own control tokens are parsed as control tokens; control-token text the client
typed (found by ``RenderedPrompt.client_control_spans``, see ``pampero.chat.provenance``) is
tokenized with ``parse_special=False``, as ordinary text. The prompt is split only around those
spans, and neighbouring spans are merged when the text between them holds no control token, so a
prompt without client control text is a single ``encode`` call, exactly as if tokenized whole.
"""

from __future__ import annotations

from pampero.chat.prompt import RenderedPrompt, Span
from pampero.chat.specials import SpecialTexts, special_texts_for
from pampero.inference import IMAGE_PLACEHOLDER_ID, Tokenizer


def tokenize_rendered(
    prompt: RenderedPrompt,
    tokenizer: Tokenizer,
    *,
    add_special: bool,
    image_marker: str | None = None,
) -> list[int]:
    """The token ids of ``prompt.text``. ``add_special`` adds the tokenizer's own BOS (and EOS,
    for the rare model that wants one) once around the whole prompt; chat templates usually
    write ``bos_token`` themselves, so chat serving passes ``False``.

    With ``image_marker`` (the stand-in text serving rendered for each image part), every marker
    becomes one ``IMAGE_PLACEHOLDER_ID`` and the text on each side is tokenized on its own, so
    no token straddles an image."""
    specials = special_texts_for(tokenizer.special_texts())
    spans = prompt.client_control_spans(specials.texts)
    text = prompt.text

    def encode(piece: str, parse_special: bool) -> list[int]:
        if image_marker is None or image_marker not in piece:
            return tokenizer.encode(piece, add_special=False, parse_special=parse_special)
        ids: list[int] = []
        for i, part in enumerate(piece.split(image_marker)):
            if i:
                ids.append(IMAGE_PLACEHOLDER_ID)
            if part:
                ids += tokenizer.encode(part, add_special=False, parse_special=parse_special)
        return ids

    if not spans and image_marker is None:
        return tokenizer.encode(text, add_special=add_special, parse_special=True)
    head, tail = _special_affixes(tokenizer) if add_special else ([], [])
    ids = list(head)
    cursor = 0
    for start, end in _coalesce(text, spans, specials):
        if start > cursor:
            ids += encode(text[cursor:start], True)
        ids += encode(text[start:end], False)
        cursor = end
    if cursor < len(text):
        ids += encode(text[cursor:], True)
    return ids + tail


def _coalesce(text: str, spans: tuple[Span, ...], specials: SpecialTexts) -> list[Span]:
    # Text between two client spans that holds no control token tokenizes the same either way;
    # keeping it inside one plain-text piece saves encode calls and keeps BPE merges intact.
    pieces: list[Span] = []
    for span in spans:
        if pieces and not _has_control(text, pieces[-1].end, span.start, specials):
            pieces[-1] = Span(pieces[-1].start, span.end)
        else:
            pieces.append(span)
    return pieces


def _has_control(text: str, start: int, end: int, specials: SpecialTexts) -> bool:
    return specials.pattern is not None and specials.pattern.search(text, start, end) is not None


def _special_affixes(tokenizer: Tokenizer) -> tuple[list[int], list[int]]:
    """What ``add_special`` adds around any text: BOS in front, anything else (EOS) after."""
    added = tokenizer.encode("", add_special=True, parse_special=False)
    bos = tokenizer.bos_token_id
    if bos is not None and added[:1] == [bos]:
        return added[:1], added[1:]
    return [], added
