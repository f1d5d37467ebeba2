"""Beam search's candidate selection (``engines/beam.py: _candidates``) picks by a threshold
pass rather than partitioning the whole vocabulary; it must pick exactly what a partition
picks, with the same log-probabilities, under every shaping parameter."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import pytest

from pampero.engines.beam import _candidates
from pampero.inference import SamplingParams


def by_partition(
    params: SamplingParams, row: npt.NDArray[np.float32], k: int
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float32]]:
    scaled = row / np.float32(params.temperature) if params.temperature > 0 else row
    peak = np.max(scaled)
    logp = scaled - (peak + np.log(np.sum(np.exp(scaled - peak))))
    if 0 < params.top_k < len(logp):
        floor = np.partition(logp, -params.top_k)[-params.top_k]
        logp = np.where(logp >= floor, logp, -np.inf)
    if params.min_p > 0:
        logp = np.where(logp >= np.log(params.min_p) + np.max(logp), logp, -np.inf)
    best = np.argpartition(logp, -k)[-k:] if k < len(logp) else np.arange(len(logp))
    best = best[np.argsort(-logp[best], kind="stable")]
    if params.top_p < 1.0:
        mass = np.cumsum(np.exp(logp[best]))
        best = best[: int(np.searchsorted(mass, params.top_p)) + 1]
    best = best[np.isfinite(logp[best])]
    return best.astype(np.int64), logp[best]


@pytest.mark.parametrize("seed", range(40))
def test_candidates_are_those_a_full_partition_picks(seed: int) -> None:
    rng = np.random.default_rng(seed)
    row = (rng.standard_normal(4096) * rng.uniform(0.5, 12.0)).astype(np.float32)
    params = SamplingParams(
        temperature=float(rng.choice([0.0, 0.5, 1.0, 1.5])),
        top_k=int(rng.choice([-1, 1, 5, 50])),
        min_p=float(rng.choice([0.0, 0.05])),
        top_p=float(rng.choice([1.0, 0.9, 0.5])),
    )
    k = int(rng.choice([1, 2, 4, 8, 16]))
    ids, logp = _candidates(params, row, k)
    want_ids, want_logp = by_partition(params, row, k)
    assert ids.tolist() == want_ids.tolist()
    np.testing.assert_allclose(logp, want_logp, rtol=1e-6)


def test_a_flat_row_and_a_beam_wider_than_the_vocabulary() -> None:
    flat = np.zeros(64, dtype=np.float32)
    ids, _ = _candidates(SamplingParams(temperature=1.0), flat, 4)
    assert len(ids) == 4 and len(set(ids.tolist())) == 4
    ids, _ = _candidates(SamplingParams(temperature=1.0), flat[:3], 8)
    assert sorted(ids.tolist()) == [0, 1, 2]
