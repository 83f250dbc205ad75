"""The health checks' thresholds (README, "Health checks": each one's source or rationale).

Fixed and documented before any seed notebook was checked against them. Our death rate is the share of a
layer's units that are *never active in a batch* (README, "Definitions"); rules stated for other definitions
(a unit dead for *every* input, Lu et al. 2019) do not carry over, so the death thresholds below carry their
own rationale.

Overfitting (``overfit_gl``, ``overfit_fit``): Prechelt, "Early Stopping -- But When?" (Neural Networks: Tricks
of the Trade, 1998), defines the generalization loss GL(t) = 100 (E_va(t) / E_opt(t) - 1) and weighs it against
the training progress P_k(t) (his PQ criterion): a rise of the validation loss means overfitting only while the
model still fits its training data better. We require that progress as a fall of the training loss by
``overfit_fit`` (10%) of its value at the best validation epoch, a few times the epoch-to-epoch wobble of a run
that stalled, and no active ``divergence`` (``causes.diverging``): a learning rate too high raises both losses.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields, replace
from typing import Any


@dataclass(frozen=True)
class HealthConfig:
    """Thresholds of every health check; ``HealthConfig(dead_rate=0.5)`` changes one, keeps the rest.

    ``enabled``: the checks to run (``None``: all of :data:`CHECKS`). Rates are shares in [0, 1]; ``*_epochs``
    and ``*_window`` count recorded epochs (rows). Raises ``ValueError`` on an unknown check or a value out of
    range (see :meth:`validated`).
    """

    # --- dead and dying layers (Output Activations; Weight Gradient Activation when no output lens) ----------
    dead_rate: float = 0.3            # death rate at or above this ...
    dead_epochs: int = 3              # ... for this many consecutive epochs: a dead layer (warning)
    dead_critical_rate: float = 0.9   # the layer is (nearly) constant: critical. Rationale: a layer that lost nine
    # in ten of its units lost an order of magnitude of its width (the decade the gradient checks read as more than
    # drift): damage (a blow-up, a bad bias or initialisation), no longer spare capacity that dropout or a narrower
    # layer addresses (trial r7: 93-94% dead after an lr blow-up got that advice under the former 0.95). Layers
    # after such a layer are named knock-ons of it (their input is nearly constant), not dead on their own
    dying_gap: float = 0.2            # death rate this far above the median of the model's other layers ...
    dying_ratio: float = 2.0          # ... and at least this many times that median ...
    dying_epochs: int = 3             # ... for this many consecutive epochs: far above the others (warning)
    dying_rise: float = 0.1           # death rate rose by this much over the window ...
    dying_window: int = 5             # ... of this many epochs while the training loss improved by less than
    stalled_improvement: float = 0.01  # this share over the same window: dying while the loss stalls (warning)
    # --- gradients (ParameterGradientGeometry) -------------------------------------------------------------
    vanishing_ratio: float = 1e-3     # a layer's weight-gradient norm below this share of the largest layer's
    vanishing_epochs: int = 2         # ... for this many consecutive epochs (warning)
    exploding_jump: float = 10.0      # a layer's gradient norm at least this many times its median over ...
    exploding_window: int = 3         # ... the previous epochs (critical), and at least this many times its median
    # over the window before them: a norm that fell by a decade (units dying after a blow-up) and comes back to an
    # ordinary size is a recovery, not Pascanu et al.'s jump "by orders of magnitude" above the layer's own level.
    # Relative to the layer's history, not an absolute floor: gradient norms scale with the loss and the layer size
    # --- update-to-weight ratio (ParameterUpdateGeometry + ParameterNorm) ----------------------------------
    update_ratio_high: float = 1e-1   # ||update|| / ||weight|| per step, epoch mean above this: LR too high (warning)
    update_ratio_low: float = 1e-5    # ... below this: learning rate too low (info)
    update_ratio_critical: float = 1.0  # ... and one step moved them by this share of their norm: critical (heuristic)
    # --- gradients accumulating across steps (ParameterGradientGeometry's correlation; the run's step counts) ---
    accumulation_correlation: float = 0.95  # every layer's mean gradient correlation >= this x (n-1)/n, the most
    # an epoch of n >= 4 steps reaches (its first step counts 0), in every epoch but the run's first (whose sums of
    # a few batches still turn): consecutive gradients nearly equal, as consecutive sums of many steps' gradients
    # are (trial r15: 0.89-0.91 against (n-1)/n = 0.909 with 11 steps; healthy minibatch runs ~0.6 with SGD,
    # towards 0 with Adam) ...
    accumulation_growth: float = 0.7  # ... and in each of those epochs every layer's gradient norm grew from the epoch
    # before by at least this share of what a running sum of every step's gradient since the run began grows by
    # (accumulation.summed_growth: 2.83x from the first epoch to the second with 11 steps each, 1.65x to the third;
    # a forgotten zero_grad measured 2.65-3.6x then 1.58-2.0x, CNNs 5-10x then 2.4-2.7x) ...
    accumulation_epochs: int = 3      # ... over the run's first this many epochs with steps (warning). Full-batch
    # training has consecutive cosines near 1 too, and its gradient may grow like a sum's for one epoch (a CNN with
    # a tiny initial gradient, Adam on digits: 2.5-5.4x), not for two (0.6-1.0x to the third). It holds while no
    # layer's norm falls below the size it reached (a sum that stops growing keeps its size)
    # --- loss (LossMetrics) ----------------------------------------------------------------------------------
    divergence_factor: float = 1.5    # training loss at least this many times its best so far (critical)
    divergence_giveback: float = 0.25  # ... and back up by at least this share of its fall from the first epoch
    spike_cv: float = 3.0             # within an epoch: loss std at least this many times its mean, while a step
    # moved some layer's weights by update_ratio_critical of their norm: the loss blew up inside it (heuristic)
    plateau_patience: int = 10        # epochs without a relative improvement of ...
    plateau_threshold: float = 1e-4   # ... this share of the best training loss (info)
    overfit_gl: float = 5.0           # Prechelt's generalization loss GL = 100 (val / best val - 1) above this ...
    overfit_fit: float = 0.1          # ... while the training loss is at least this share below its value at the
    # best validation epoch, and no divergence holds (warning). Prechelt (1998) reads GL in the phase where training
    # still makes progress (his training progress P_k; PQ = GL / P_k); a loss that fell by less than 10% since the
    # best validation epoch is within the few-percent wobble of a run that stalled or collapsed to chance (an lr=3
    # SGD run on digits: 2.353 -> 2.279, ln 10 = 2.303), not a model fitting its training data better
    overfit_epochs: int = 2           # ... for this many consecutive epochs: Prechelt reads GL at the end of strips
    # of 5 epochs; read every epoch, a validation loss of a few hundred samples crosses GL5 on single epochs of
    # noise (trial r13b: a healthy run flagged and cleared 4 times, "stop early at epoch 6" of a run that improved
    # to epoch 20)
    # --- confident softmax output (OutputActivation + a validation accuracy metric) -----------------------------
    confident_share: float = 0.5      # softmax activation rate at most this share of its first epoch's ...
    low_accuracy: float = 0.9         # ... while validation accuracy is below this (warning)
    accuracy_metric: str | None = None  # Metrics key to read (None: the first key naming val and acc)
    enabled: tuple[str, ...] | None = None

    def __post_init__(self) -> None:  # checked when made (and by dataclasses.replace), as the docstring says
        if self.enabled is not None and not isinstance(self.enabled, str):
            object.__setattr__(self, "enabled", tuple(self.enabled))
        self.validated()

    def validated(self) -> HealthConfig:
        """``self`` after checking every value; raises ``ValueError`` naming the field and its range."""
        shares = ("dead_rate", "dead_critical_rate", "dying_gap", "dying_rise", "stalled_improvement",
                  "vanishing_ratio", "plateau_threshold", "confident_share", "low_accuracy", "divergence_giveback",
                  "overfit_fit", "accumulation_correlation", "accumulation_growth")
        for name in shares:
            v = getattr(self, name)
            if not isinstance(v, (int, float)) or isinstance(v, bool) or not 0 < v <= 1:
                raise ValueError(f"HealthConfig({name}={v!r}): must be a number in (0, 1]")
        counts = ("dead_epochs", "dying_epochs", "dying_window", "vanishing_epochs", "exploding_window",
                  "plateau_patience", "overfit_epochs")
        for name in counts:
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise ValueError(f"HealthConfig({name}={v!r}): must be an int >= 1 (epochs)")
        if not isinstance(self.accumulation_epochs, int) or isinstance(self.accumulation_epochs, bool) or \
                self.accumulation_epochs < 2:
            raise ValueError(f"HealthConfig(accumulation_epochs={self.accumulation_epochs!r}): must be an int >= 2 "
                             "(epochs: the norm's growth is read between consecutive ones)")
        for name in ("dying_ratio", "exploding_jump", "divergence_factor"):
            v = getattr(self, name)
            if not isinstance(v, (int, float)) or isinstance(v, bool) or v < 1:
                raise ValueError(f"HealthConfig({name}={v!r}): must be a factor >= 1")
        for name in ("update_ratio_high", "update_ratio_low", "update_ratio_critical", "spike_cv", "overfit_gl"):
            v = getattr(self, name)
            if not isinstance(v, (int, float)) or isinstance(v, bool) or not v > 0:
                raise ValueError(f"HealthConfig({name}={v!r}): must be a positive number")
        if self.update_ratio_low >= self.update_ratio_high:
            raise ValueError(f"HealthConfig: update_ratio_low={self.update_ratio_low} must be below "
                             f"update_ratio_high={self.update_ratio_high}")
        if self.update_ratio_critical < self.update_ratio_high:
            raise ValueError(f"HealthConfig: update_ratio_critical={self.update_ratio_critical} must be at least "
                             f"update_ratio_high={self.update_ratio_high}")
        if self.dead_critical_rate < self.dead_rate:
            raise ValueError(f"HealthConfig: dead_critical_rate={self.dead_critical_rate} must be at least "
                             f"dead_rate={self.dead_rate} (raise both: the critical rate marks a (nearly) constant layer)")
        if self.enabled is not None:
            unknown = [c for c in self.enabled if c not in CHECKS]
            if unknown or isinstance(self.enabled, str):
                raise ValueError(f"HealthConfig(enabled={self.enabled!r}): unknown check(s) {unknown}; "
                                 f"known: {', '.join(CHECKS)}")
        return self

    def with_changes(self, **changes: Any) -> HealthConfig:
        """A copy with ``changes`` applied and validated; an unknown name raises ``TypeError``."""
        known = {f.name for f in fields(self)}
        unknown = sorted(set(changes) - known)
        if unknown:
            raise TypeError(f"HealthConfig has no field(s) {', '.join(unknown)}; fields: {', '.join(sorted(known))}")
        if "enabled" in changes and changes["enabled"] is not None:
            changes["enabled"] = tuple(changes["enabled"])
        return replace(self, **changes).validated()

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


#: Every check, by the name findings carry in ``Finding.check``.
CHECKS = ("dead_layer", "dying_layer", "dying_trend", "vanishing_gradient", "exploding_gradient",
          "update_ratio", "accumulating_gradient", "nonfinite", "divergence", "plateau", "overfitting",
          "confident_softmax")
