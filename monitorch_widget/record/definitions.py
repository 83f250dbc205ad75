"""The measuring rules a run's values were taken with (README: "Definitions", "What each statistic reads").

Saved histories carry them; a run measured under other rules is flagged when loaded or imported, so that
incomparable runs are never overlaid silently.
"""

from __future__ import annotations

VERSION = 3
DEFINITIONS = {
    "version": VERSION,
    "gradient_observation": "one per gradient use: each torch.optim step reads the gradient it used; a gradient "
                            "no step used counts once, as at the end of its last backward pass",
    "units": "per layer: output channels (ConvTranspose: axis 1 per group; GPT-2 Conv1D: axis 1), vocabulary "
             "rows, gate rows",
    "activation_channels": "dim 1 after convolutions and feature-map norms, last dim after linear-like layers",
    "quantiles": "median, IQR and the Q1-Q3 band of kept per-batch values: the closest observation (Hyndman & "
                 "Fan 3, monitorch's rule); Q1 and Q3 points: linear interpolation",
}
#: what changed in the version after each one: a run measured under version v differs by CHANGES[v:]
CHANGES = {
    1: "gradient observations were taken per backward pass (running partial sums under gradient accumulation), "
       "transposed-convolution and GPT-2 Conv1D weight units were input channels, and activation channels were "
       "always dim 1",
    2: "the median, IQR and Q1-Q3 band of kept per-batch values were interpolated linearly",
}


def differences_since(version: int) -> str:
    """What a run measured under definitions ``version`` differs by from today's (empty when it is today's)."""
    return "; ".join(text for v, text in sorted(CHANGES.items()) if v >= version)


class DefinitionsWarning(UserWarning):
    """A saved history was measured with other definitions than this version uses."""
