"""How the master rank combines the ranks' host parts at a tick (no process group needed)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from monitorch_widget import PyTorchInspector
from monitorch_widget.collect.streams import StatStream
from monitorch_widget.collect.transfer import _pack, combine_parts, copy_to_host, describe, to_host
from monitorch_widget.lens import LossMetrics


def part(values: list[float]):
    s = StatStream(1, keep_all=True)
    col = torch.tensor(values, dtype=torch.float64)
    s.fold(col[:, None], torch.isfinite(col))
    return s, copy_to_host([s])[0]


def test_moments_add_extremes_max_and_kept_values_concatenate_in_rank_order():
    _, a = part([1.0, 4.0])
    _, b = part([2.0, float("nan"), 9.0])
    combined, problems = combine_parts([[a, None], [b, None]])
    assert problems == [] and combined[1] is None
    sums, extremes, kept = combined[0]
    everything = np.array([1.0, 4.0, 2.0, 9.0])
    # [count, nonfinite, sum, sum of squares | -min, max]
    np.testing.assert_array_equal(sums, [4, 1, everything.sum(), (everything ** 2).sum()])
    np.testing.assert_array_equal(extremes, [-1.0, 9.0])
    np.testing.assert_array_equal(kept[0][:, 0], [1.0, 4.0, 2.0, np.nan, 9.0])


def test_a_rank_without_the_accumulator_adds_nothing_and_a_size_mismatch_is_reported():
    _, a = part([1.0])
    wide = (np.zeros(6), np.zeros(4), {})
    combined, problems = combine_parts([[None, a], [a, wide]])
    np.testing.assert_array_equal(combined[0][0], a[0])
    np.testing.assert_array_equal(combined[1][0], a[0])
    assert problems == ["rank 1 has 6 statistics where another rank has 4 (accumulator 1); its values are left out"]


class TwoRanks:
    """Stands in for RankExchange: the master, with the other rank's part given."""
    master = 0

    def __init__(self, other: bytes) -> None:
        self.other = other

    def combine(self, mine: bytes, reduce):
        return reduce([mine, self.other])


def test_ranks_that_watch_other_statistics_are_not_mixed():
    stream, mine = part([1.0, 3.0])
    _, theirs = part([100.0])
    other = _pack([theirs, theirs], layout=[describe(stream), describe(stream)])
    problems = []
    summaries = to_host([stream], exchange=TwoRanks(other), report=problems.append)
    assert summaries[id(stream)][0].point("mean") == 2.0  # the master's own batches
    assert problems == ["rank(s) 1 watch other statistics than rank 0 (a different model, lenses or inspector on "
                        "some rank); this epoch shows rank 0's own batches"]
    same = _pack([theirs], layout=[describe(stream)])
    summaries = to_host([stream], exchange=TwoRanks(same), report=problems.append)
    assert summaries[id(stream)][0].point("median") == 3.0  # median of 1, 3, 100


@pytest.mark.parametrize("bad", [0, -1.0, "60", True, float("nan")])
def test_distributed_timeout_must_be_a_positive_number_of_seconds(bad):
    with pytest.raises(ValueError, match="distributed_timeout=.*positive number of seconds"):
        PyTorchInspector([LossMetrics()], visualizer="none", distributed_timeout=bad)
