"""Prefix-cache affinity (``--routing prefix``): a request goes to the provider that most likely
still holds its prompt's prefix in KV cache, unless that provider is loaded well above the
least loaded one.

The gateway cannot look into its providers' caches, so it keeps an approximation of them, as
SGLang's model gateway (``cache_aware``: a radix tree of request text per worker) and the
Gateway API inference extension (chained hashes of prompt blocks per server) do: the prompt's
text, before any chat template (the gateway has no tokenizer), is cut into blocks of
``block_chars`` characters, each block's hash chained to the one before it, so one hash stands
for a whole prefix. Each provider has a bounded LRU set of the hashes of prompts sent to it;
a request's match with a provider is the number of its leading hashes found there. A
conversation's next turn resends its history, so its leading blocks are those of the turn
before and match the provider that served it.

Choice, per request (only providers whose breaker lets a request through; standbys last):

1. the provider with the longest match (ties: the least loaded) is chosen when the match covers
   at least ``threshold`` of the prompt and that provider is not *overloaded*: more than
   ``spill_abs`` requests in flight above the least loaded provider and more than
   ``spill_rel`` times its count (smg's balance thresholds);
2. otherwise the least loaded provider by requests in flight per unit of weight, ties going to
   the one holding the fewest blocks (the most room), then at random.

The chosen provider is credited with every block of the prompt at once, as smg inserts at
selection (a failover to the next provider leaves the credit with the first choice, which is
then passed over while its breaker is open). The blocks are touched last to first, so a
prompt's head is the last to be evicted, as in an engine's cache. Memory is bounded:
``capacity`` block hashes per provider (the default, 16384 blocks of 64 characters, is about a
million characters of prompt text, some 250k tokens). The index is guarded by a lock, so one
policy may serve several threads.
"""

from __future__ import annotations

import hashlib
import json
import random
import threading
from collections import OrderedDict
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from pampero.gateway.policies import split_standby

if TYPE_CHECKING:
    from pampero.gateway.router import Provider
    from pampero.protocol import ChatCompletionRequest, Parsed

BLOCK_CHARS = 64
CAPACITY = 16384
THRESHOLD = 0.3
SPILL_ABS = 4
SPILL_REL = 1.5
_RECORD, _FIELD = "\x1e", "\x1f"  # ASCII record and unit separators: absent from real text


def prompt_text(raw: Mapping[str, Any]) -> str:
    """A chat request's prompt as one string, in the order a chat template renders it: the
    tools (templates put them in the system turn), then every message. A conversation's next
    turn gives a string that starts with this one. Non-text parts (images, audio, files) stand
    as a short hash of themselves, so a data URI does not flood the index."""
    parts: list[str] = []
    tools = raw.get("tools") or raw.get("functions")
    if tools:
        parts.append(f"{_RECORD}tools{_FIELD}{_dumps(tools)}")
    for message in raw.get("messages") or ():
        parts.append(_message_text(message))
    return "".join(parts)


def _message_text(message: Any) -> str:
    if not isinstance(message, Mapping):
        return _RECORD + _dumps(message)
    head = _dumps({k: v for k, v in message.items() if k != "content"})
    content = message.get("content")
    if isinstance(content, list):
        body = "".join(_part_text(part) for part in content)
    elif content is None or isinstance(content, str):
        body = content or ""
    else:
        body = _dumps(content)
    return f"{_RECORD}{head}{_FIELD}{body}"


def _part_text(part: Any) -> str:
    if (
        isinstance(part, Mapping)
        and part.get("type") == "text"
        and isinstance(part.get("text"), str)
    ):
        return str(part["text"])
    digest = hashlib.blake2b(_dumps(part).encode(), digest_size=8).hexdigest()
    kind = part.get("type") if isinstance(part, Mapping) else "part"
    return f"{_FIELD}{kind}:{digest}{_FIELD}"


def _dumps(value: Any) -> str:
    return json.dumps(value, sort_keys=True, ensure_ascii=False, separators=(",", ":"), default=str)


def block_hashes(text: str, block_chars: int = BLOCK_CHARS) -> list[int]:
    """The chained hashes of ``text``'s whole blocks: hash ``i`` stands for the first ``i + 1``
    blocks (a trailing part block is left out).

    >>> a, b = block_hashes("x" * 130, 64), block_hashes("x" * 128 + "yyyy", 64)
    >>> len(a), a == b, block_hashes("x" * 63, 64)
    (2, True, [])
    """
    hashes: list[int] = []
    chained = b""
    for start in range(0, len(text) - block_chars + 1, block_chars):
        block = text[start : start + block_chars].encode("utf-8", "surrogatepass")
        chained = hashlib.blake2b(chained + block, digest_size=8).digest()
        hashes.append(int.from_bytes(chained, "big"))
    return hashes


class PrefixIndex:
    """Per provider, the block hashes of prompts recently sent to it, at most ``capacity`` each,
    least recently used first. Thread-safe."""

    def __init__(self, capacity: int = CAPACITY) -> None:
        if capacity < 1:
            raise ValueError("capacity must be at least 1")
        self.capacity = capacity
        self._held: dict[str, OrderedDict[int, None]] = {}
        self._lock = threading.Lock()

    def matched(self, provider: str, hashes: list[int]) -> int:
        """How many of ``hashes``, from the first, ``provider`` holds."""
        with self._lock:
            held = self._held.get(provider)
            if not held:
                return 0
            count = 0
            for value in hashes:
                if value not in held:
                    break
                count += 1
            return count

    def insert(self, provider: str, hashes: list[int]) -> None:
        """Credit ``provider`` with a prompt's blocks; the oldest blocks of its set go past
        ``capacity``. The head is touched last, so it outlives the tail."""
        with self._lock:
            held = self._held.setdefault(provider, OrderedDict())
            for value in reversed(hashes):
                held[value] = None
                held.move_to_end(value)
            while len(held) > self.capacity:
                held.popitem(last=False)

    def size(self, provider: str) -> int:
        with self._lock:
            return len(self._held.get(provider) or ())

    def forget(self, provider: str) -> None:
        """Drop what ``provider`` was credited with (it restarted: its cache is empty)."""
        with self._lock:
            self._held.pop(provider, None)

    def providers(self) -> list[str]:
        with self._lock:
            return list(self._held)


class PrefixAffinity:
    """The ``prefix`` routing policy (see the module docstring). Without a request to read (a
    caller that gives none), it orders by load alone."""

    def __init__(
        self,
        *,
        block_chars: int = BLOCK_CHARS,
        capacity: int = CAPACITY,
        threshold: float = THRESHOLD,
        spill_abs: int = SPILL_ABS,
        spill_rel: float = SPILL_REL,
        rng: random.Random | None = None,
    ) -> None:
        if block_chars < 1 or not 0.0 <= threshold <= 1.0 or spill_abs < 0 or spill_rel < 1.0:
            raise ValueError(
                "block_chars >= 1, 0 <= threshold <= 1, spill_abs >= 0, spill_rel >= 1"
            )
        self.block_chars = block_chars
        self.threshold = threshold
        self.spill_abs = spill_abs
        self.spill_rel = spill_rel
        self.index = PrefixIndex(capacity)
        self.rng = rng or random.Random()

    def order(
        self,
        providers: list[Provider],
        session: str | None,
        request: Parsed[ChatCompletionRequest] | None = None,
    ) -> list[Provider]:
        active, standby = split_standby(providers)
        ready = [p for p in active if p.health.available()]
        text = prompt_text(request.raw) if request is not None else ""
        hashes = block_hashes(text, self.block_chars)
        chosen = self.choose(ready, text, hashes) if ready else None
        rest = self._by_load(p for p in active if p is not chosen)
        return ([chosen] if chosen is not None else []) + rest + standby

    def choose(self, ready: list[Provider], text: str, hashes: list[int]) -> Provider:
        """The provider for a prompt among ``ready`` (non-empty), credited with its blocks."""
        least = self._by_load(ready)[0]
        chosen = least
        if hashes:
            matches = {p.name: self.index.matched(p.name, hashes) for p in ready}
            best = max(ready, key=lambda p: (matches[p.name], -_load(p)))
            share = matches[best.name] * self.block_chars / len(text)
            if matches[best.name] and share >= self.threshold and not self.overloaded(best, least):
                chosen = best
            self.index.insert(chosen.name, hashes)
        return chosen

    def overloaded(self, holder: Provider, least: Provider) -> bool:
        """Whether ``holder`` is loaded well above ``least``: by more than ``spill_abs``
        requests in flight and more than ``spill_rel`` times as many."""
        high, low = holder.health.outstanding, least.health.outstanding
        return high - low > self.spill_abs and high > low * self.spill_rel

    def _by_load(self, providers: Iterable[Provider]) -> list[Provider]:
        keyed = [(_load(p), self.index.size(p.name), self.rng.random(), p) for p in providers]
        keyed.sort(key=lambda item: item[:3])
        return [item[3] for item in keyed]


def _load(provider: Provider) -> float:
    return provider.health.outstanding / provider.weight if provider.weight > 0 else float("inf")


__all__ = ["PrefixAffinity", "PrefixIndex", "block_hashes", "prompt_text"]
