"""Inverse-CDF draws over a whole vocabulary by blocks give the token a full running sum
gives, and never a token without weight."""

from __future__ import annotations

import numpy as np

from pampero.sampling.sampler import _draw


def _full(weights: np.ndarray, u: float) -> int:
    cumulative = np.cumsum(weights, dtype=np.float64)
    return min(int(np.searchsorted(cumulative, u * cumulative[-1], side="right")), len(weights) - 1)


def test_block_draws_match_a_full_running_sum() -> None:
    rng = np.random.default_rng(7)
    for n in (5, 2048, 2049, 151_936):
        weights = rng.random(n).astype(np.float32) ** 8  # uneven, like a softmax
        for u in [0.0, 0.5, 0.999999, *rng.random(200)]:
            assert _draw(weights, float(u)) == _full(weights, float(u))


def test_tokens_without_weight_are_never_drawn() -> None:
    rng = np.random.default_rng(3)
    weights = np.zeros(151_936, dtype=np.float32)
    kept = rng.choice(len(weights), size=40, replace=False)
    weights[kept] = rng.random(40).astype(np.float32)
    drawn = {_draw(weights, float(u)) for u in rng.random(5000)}
    assert drawn <= set(int(k) for k in kept)
    assert len(drawn) > 30
    assert _draw(weights, float(np.nextafter(1.0, 0.0))) == int(kept.max())
