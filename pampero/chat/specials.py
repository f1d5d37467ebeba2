"""A tokenizer's control-token texts, prepared for fast searching.

Llama 3 has 256 reserved control tokens; a plain alternation of them would make the regex engine
try every one at every position. A trie-shaped pattern shares prefixes (``<|reserved_special_``)
and, with greedy optional tails, prefers the longest token at a position, as tokenizers do.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache

_Trie = dict[str, "_Trie"]
_END = ""


@dataclass(frozen=True)
class SpecialTexts:
    """The control-token texts of one tokenizer."""

    texts: frozenset[str]
    pattern: re.Pattern[str] | None  # None when there are no control tokens
    by_first_char: Mapping[str, tuple[str, ...]]
    longest: int

    def occurs_in(self, text: str) -> bool:
        return self.pattern is not None and self.pattern.search(text) is not None


@lru_cache(maxsize=16)
def special_texts_for(texts: frozenset[str]) -> SpecialTexts:
    """The searchable form of ``texts`` (cached: a server has one or two tokenizers)."""
    words = frozenset(t for t in texts if t)
    by_first: dict[str, list[str]] = {}
    for word in words:
        by_first.setdefault(word[0], []).append(word)
    return SpecialTexts(
        texts=words,
        pattern=re.compile(_trie_regex(words)) if words else None,
        by_first_char={c: tuple(sorted(ws, key=len, reverse=True)) for c, ws in by_first.items()},
        longest=max((len(w) for w in words), default=0),
    )


def _trie_regex(words: frozenset[str]) -> str:
    trie: _Trie = {}
    for word in words:
        node = trie
        for char in word:
            node = node.setdefault(char, {})
        node[_END] = {}
    return _node_regex(trie)


def _node_regex(node: _Trie) -> str:
    branches = [re.escape(c) + _node_regex(child) for c, child in sorted(node.items()) if c]
    if not branches:
        return ""
    body = branches[0] if len(branches) == 1 else "(?:" + "|".join(branches) + ")"
    # A word may end here while longer words go on; the greedy ``?`` tries the longer first.
    return f"(?:{body})?" if _END in node else body
