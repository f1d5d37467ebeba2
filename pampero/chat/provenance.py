"""Which control-token text in a rendered prompt the client typed, and which the template wrote.

A chat template writes real control tokens (``<|im_start|>``, ``<|eot_id|>``, ``[INST]``) around
client strings. If a client string itself holds such text, tokenizing the prompt with special
parsing on would turn it into a real control token: the client could forge a system turn. So the
tokenizer must see client-typed control text as plain text, and that needs, for every
control-token occurrence in the prompt, to know who wrote it.

Method: the shadow render
-------------------------
Searching the prompt for each client string does not work: templates transform strings (``|
trim``, ``content.split('</think>')[-1]``, ``| tojson``, the system message moved into the last
user turn), a short string matches template text too, and a wrong guess fails unsafe. Instead the
prompt is rendered a second time, with every control-token text inside every client string
(message contents, names, reasoning, tool-call arguments, tool definitions, documents, template
kwargs; values and object keys) replaced by a *mark* of the same length: one private-use
character, chosen absent from the prompt and from the control-token texts. Then:

- the shadow holds no client-typed control token, so every control token it holds is the
  template's own;
- transforms that do not look at the control-token text (concatenation, trim, JSON encoding,
  reordering, most splits) move the marks exactly where the client's text went, so the two renders
  have the same length and differ only where the shadow holds a mark.

The prompt and the shadow are aligned from the front as far as they agree up to marks, and from
the back likewise. Inside either aligned stretch, characters facing a mark are client control
text. If the two stretches do not cover the whole prompt, the template's output depended on the
control text itself (a template splitting on a control token, or escaping non-ASCII), and the
unaligned middle is treated as client text entirely: every control token in it is neutralised,
the template's own included. That is the safe side: the prompt may degrade, the model cannot be
steered.

The common case costs nothing: when no client string holds control-token text (one regex pass
over the client strings), there is no shadow render and no span.

Limits
------
- A control token the template assembles from fragments around client text (``'<|' + name +
  '|>'``) is invisible to the method; no known chat template does that around free text, and roles
  are validated against a fixed set before rendering.
- A template whose control flow depends on control-token text in client strings falls into the
  unaligned-middle case above, degrading that part of the prompt.
- The shadow render costs one more render, under its own budget, only for requests that hold
  control-token text. Should the template refuse the shadow (it tested the control text and
  calls ``raise_exception``), the request fails with that 400 rather than guess.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Protocol

import numpy as np
import numpy.typing as npt

from pampero.chat.specials import SpecialTexts
from pampero.errors import InvalidRequestError

_CodePoints = npt.NDArray[np.uint32]
# Plane 15 private-use characters: never produced by a template, rarely by anyone.
_MARK_FIRST, _MARK_LAST = 0xF0000, 0xFFFFD


class ShadowRenderable(Protocol):
    text: str

    def client_strings(self) -> Iterator[str]: ...

    def render_shadow(self, rewrite: Callable[[str], str]) -> str: ...


def client_control_spans(prompt: ShadowRenderable, specials: SpecialTexts) -> list[tuple[int, int]]:
    """Sorted, disjoint ``(start, end)`` spans of ``prompt.text`` holding client control text."""
    pattern = specials.pattern
    if pattern is None or not any(pattern.search(s) for s in prompt.client_strings()):
        return []
    real = _code_points(prompt.text)
    mark = _pick_mark(real, specials)

    def defang(text: str) -> str:
        return pattern.sub(lambda match: mark * len(match.group()), text)

    shadow = _code_points(prompt.render_shadow(defang))
    return _merge(_dirty_zones(real, shadow, ord(mark)))


def _code_points(text: str) -> _CodePoints:
    # surrogatepass: a JSON body may carry lone surrogates, which must not crash the comparison.
    return np.frombuffer(text.encode("utf-32-le", "surrogatepass"), dtype=np.uint32)


def _pick_mark(real: _CodePoints, specials: SpecialTexts) -> str:
    used = real[(real >= _MARK_FIRST) & (real <= _MARK_LAST)] - _MARK_FIRST
    extra = [ord(c) - _MARK_FIRST for t in specials.texts for c in t if ord(c) >= _MARK_FIRST]
    if not used.size and not extra:
        return chr(_MARK_FIRST)
    taken = np.zeros(_MARK_LAST - _MARK_FIRST + 1, dtype=np.bool_)
    taken[used] = True
    taken[[e for e in extra if e < taken.size]] = True
    free = int(np.argmin(taken))
    if taken[free]:
        raise InvalidRequestError(
            "The conversation uses every private-use character of plane 15; "
            "pampero cannot isolate its control-token text.",
            param="messages",
        )
    return chr(_MARK_FIRST + free)


def _dirty_zones(real: _CodePoints, shadow: _CodePoints, mark: int) -> list[tuple[int, int]]:
    """Spans of the real prompt not shown to be the template's by the shadow (see module doc)."""
    n_real, n_shadow = len(real), len(shadow)
    n = min(n_real, n_shadow)
    head_real, head_shadow = real[:n], shadow[:n]
    broken = np.flatnonzero((head_real != head_shadow) & (head_shadow != mark))
    prefix = int(broken[0]) if broken.size else n
    if prefix == n_real:
        return _runs(head_shadow == mark, 0)
    offset = n_real - n  # real index of the first character aligned from the back
    tail_real, tail_shadow = real[offset:], shadow[n_shadow - n :]
    broken = np.flatnonzero((tail_real != tail_shadow) & (tail_shadow != mark))
    suffix = offset + int(broken[-1]) + 1 if broken.size else offset
    if suffix == 0:
        return _runs(tail_shadow == mark, 0)
    zones = _runs(head_shadow[:prefix] == mark, 0)
    zones += _runs(tail_shadow[suffix - offset :] == mark, suffix)
    low, high = min(prefix, suffix), max(prefix, suffix)
    # Nothing between the stretches, or where they overlap, is attributed to the template; where
    # they just meet, one character keeps a token straddling the seam from passing as theirs.
    zones.append((low, max(high, low + 1)))
    return zones


def _runs(mask: npt.NDArray[np.bool_], base: int) -> list[tuple[int, int]]:
    if not mask.any():
        return []
    edges = np.flatnonzero(np.diff(np.concatenate(([0], mask.astype(np.int8), [0]))))
    starts, ends = edges[0::2] + base, edges[1::2] + base
    return list(zip(starts.tolist(), ends.tolist(), strict=True))


def _merge(zones: list[tuple[int, int]]) -> list[tuple[int, int]]:
    merged: list[tuple[int, int]] = []
    for start, end in sorted(zones):
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], end))
        else:
            merged.append((start, end))
    return merged
