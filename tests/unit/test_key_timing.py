"""Wrong keys that share 0..N leading characters with the real one take the same time to refuse.

The measurement is first shown able to see a leak: a comparison that stops at the first
differing character (the way ``==`` on strings works, spelled out so its cost per character is
large enough to see on a busy machine) must show a clear slope over the shared-prefix length.
The same measurement on pampero's check must show none. Each point is the minimum over many
rounds of a batch of calls (the minimum is what a patient attacker converges on, and it shrugs
off the scheduler noise a loaded CI machine adds).
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable

from pampero.api.middleware import BearerAuth

KEY = "sk-" + "k7Qz9Lm2Xp4Wv8Rt6Yn3Hb5Jd1Fg0Sa" * 2
LAST = len(KEY) - 1
PREFIXES = (0, 16, 32, 48, LAST)
BATCH = 200
ROUNDS = 60


def _wrong_key(shared: int) -> str:
    """A key of the real one's length sharing exactly ``shared`` leading characters."""
    flipped = "A" if KEY[shared] != "A" else "B"
    return KEY[:shared] + flipped + KEY[shared + 1 :]


def _cost(check: Callable[[str], bool], token: str) -> float:
    best = float("inf")
    for _ in range(ROUNDS):
        started = time.perf_counter_ns()
        for _ in range(BATCH):
            check(token)
        best = min(best, time.perf_counter_ns() - started)
    return best / BATCH


def _profile(check: Callable[[str], bool]) -> dict[int, float]:
    for shared in PREFIXES:  # warm caches before measuring anything
        _cost(check, _wrong_key(shared))
    costs = {shared: [_cost(check, _wrong_key(shared))] for shared in PREFIXES}
    for shared in reversed(PREFIXES):  # a second pass in the other order cancels drift
        costs[shared].append(_cost(check, _wrong_key(shared)))
    return {shared: min(values) for shared, values in costs.items()}


def _leaky(token: str) -> bool:
    if len(token) != len(KEY):
        return False
    for mine, theirs in zip(token, KEY, strict=True):  # noqa: SIM110 (the early exit is the point)
        if mine != theirs:
            return False
    return True


def _pampero(auth: BearerAuth) -> Callable[[str], bool]:
    def check(token: str) -> bool:
        scope = {"headers": [(b"authorization", b"Bearer " + token.encode())]}
        return auth._authorised(scope)

    return check


def test_the_measurement_sees_an_early_exit_comparison() -> None:
    costs = _profile(_leaky)
    assert all(costs[a] < costs[b] for a, b in itertools.pairwise(PREFIXES)), costs
    assert costs[LAST] > 2 * costs[0], costs


def test_wrong_keys_sharing_a_prefix_cost_the_same() -> None:
    auth = BearerAuth(lambda scope, receive, send: None, [KEY, "sk-another-configured-key"])  # type: ignore[arg-type,return-value]
    check = _pampero(auth)
    assert check(KEY) and not check(_wrong_key(10))
    leak = _profile(_leaky)
    slope_leaky = (leak[LAST] - leak[0]) / LAST
    costs = _profile(check)
    spread = max(costs.values()) - min(costs.values())
    # A leak as steep as a character-by-character check would add slope_leaky * LAST ns between
    # the ends; pampero's spread must stay far below it.
    assert spread < 0.25 * slope_leaky * LAST, (costs, slope_leaky)
