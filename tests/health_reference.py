"""The health checks evaluated the straightforward way: every check re-reads whole columns with numpy at every row.

This is how ``record/health/`` computed them before the checks became incremental (running folds over final
rows, ``scans.py``); ``test_health_incremental.py`` replays runs through both and requires identical findings.
The gradient checks did not change and are not repeated here, nor is dead_layer's note on earlier too-large steps
(``history.overshoot``: it needs the per-step update ratio, which the replayed scenarios do not record); ``apply`` is ``HealthMonitor._apply`` as it was.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np

from monitorch_widget.record.health.accumulation import accumulating_gradient
from monitorch_widget.record.health.config import HealthConfig
from monitorch_widget.record.health.finding import SEVERITIES, Condition, Finding, named, pct, sci
from monitorch_widget.record.health.layers import (
    _CONSTANT_ADVICE,
    _DEAD_ADVICE,
    _DYING_ADVICE,
    _TREND_ADVICE,
    _death_layers,
)
from monitorch_widget.record.health.loss import _NONFINITE_ADVICE, _holds, _stalled_by
from monitorch_widget.record.health.rows import (
    GRADIENT_NORM,
    LOSS_PANELS,
    OUTPUT_ACTIVATIONS,
    RowView,
    Skipped,
    finite,
    is_softmax,
)


def _activations(view: RowView, panel: str, layers: list) -> np.ndarray:
    """The activation rates of ``layers`` (Output Activations; NaN where none)."""
    if panel != "Output Activations":
        return np.full(len(layers), np.nan)
    cols = {c.group: c.index for c in view.run.columns
            if c.panel == panel and c.key == "activation_rate" and c.role == "line"}
    row = view.data[view.row]
    return np.array([row[cols[g]] if g in cols else np.nan for g, _ in layers])


def _upstream(values: np.ndarray, k: int, cfg: HealthConfig, acts: np.ndarray) -> int | None:
    """The nearest (nearly) constant layer before layer k with no healthy layer (a finite rate below dead_rate)
    between them, or None; None too when layer k's units are partly active (activation + death rate < 0.95: its
    input varies)."""
    if acts[k] + values[k] < 0.95:
        return None
    for j in range(k - 1, -1, -1):
        if values[j] >= cfg.dead_critical_rate:
            return j
        if values[j] < cfg.dead_rate:
            return None
    return None


def dead_layer(view: RowView, cfg: HealthConfig) -> list[Condition]:
    panel, layers = _death_layers(view)
    values = view.row_values([idx for _, idx in layers])
    acts = _activations(view, panel, layers)
    out = []
    for k in np.flatnonzero(values >= cfg.dead_rate):  # NaN compares False
        layer, d = layers[k][0], float(values[k])
        critical = d >= cfg.dead_critical_rate
        message = (f"{pct(d)} of its units stay silent for whole batches (dead layer: at least {pct(cfg.dead_rate)} "
                   f"for {cfg.dead_epochs} epochs{'; the layer is nearly constant' if critical else ''}).")
        advice = _CONSTANT_ADVICE if critical else _DEAD_ADVICE
        up_k = _upstream(values, k, cfg, acts)
        if up_k is not None:  # a knock-on of the nearest constant layer before it, no healthy layer between
            up = layers[up_k][0]
            message += (f" Before it, {named(up)} is dead (at least {pct(cfg.dead_critical_rate)} silent), so this "
                        "layer's input is (nearly) the constant bias of the layer between: most likely why its units "
                        "are silent too.")
            advice = (f"revive {named(up)} first (its dead_layer finding says how); this layer's units fire again "
                      "only once its input varies, so dropout or a narrower layer here would not help")
        out.append(Condition("dead_layer", "critical" if critical else "warning", layer, panel, d, message, advice,
                             need=cfg.dead_epochs))
    return out


def dying_layer(view: RowView, cfg: HealthConfig) -> list[Condition]:
    panel, layers = _death_layers(view)
    values = view.row_values([idx for _, idx in layers])
    ok = np.flatnonzero(np.isfinite(values))
    if ok.size < 2:
        return []
    acts = _activations(view, panel, layers)
    out = []
    # a candidate is at least dying_gap above a median that is >= 0 (the prefilter keeps this O(layers))
    for k in ok[(values[ok] >= cfg.dying_gap) & (values[ok] < cfg.dead_critical_rate)]:
        if _upstream(values, k, cfg, acts) is not None:  # a knock-on of a constant layer before it
            continue
        layer, d = layers[k][0], float(values[k])
        median = float(np.median(values[ok[ok != k]]))
        if d >= median + cfg.dying_gap and d >= cfg.dying_ratio * median:
            out.append(Condition(
                "dying_layer", "warning", layer, panel, d,
                f"{pct(d)} of its units are silent for whole batches, far above the model's other layers "
                f"(median {pct(median)}).", _DYING_ADVICE.format(panel=panel), need=cfg.dying_epochs))
    return out


def dying_trend(view: RowView, cfg: HealthConfig) -> list[Condition]:
    panel, layers = _death_layers(view)
    start = view.row - cfg.dying_window + 1
    if start < 0 or not layers:
        return []
    loss = view.upto(view.train_loss())
    l0, l1 = float(loss[start]), float(loss[view.row])
    if not (finite(l0) and finite(l1)) or l0 == 0:
        return []
    improvement = (l0 - l1) / abs(l0)
    if improvement >= cfg.stalled_improvement:
        return []
    if improvement > 0:
        change = f"improved by only {improvement:.1%}"
    elif improvement == 0:
        change = "did not change"
    elif l0 > 0 and l1 >= 2 * l0:  # more than doubled: a factor, not "worse by 70354.5%"
        change = f"got {l1 / l0:.3g}x worse ({sci(l0)} -> {sci(l1)})"
    else:
        change = f"got worse by {-improvement:.1%} ({sci(l0)} -> {sci(l1)})"
    cols = [idx for _, idx in layers]
    first, last = view.run.data[start, cols], view.row_values(cols)
    out = []
    for k in np.flatnonzero(last - first >= cfg.dying_rise):  # NaN compares False
        layer, d0, d1 = layers[k][0], float(first[k]), float(last[k])
        out.append(Condition(
            "dying_trend", "warning", layer, panel, d1,
            f"its death rate rose from {pct(d0)} to {pct(d1)} over {cfg.dying_window} epochs while the "
            f"training loss {change}.", _TREND_ADVICE, since=view.epoch_of(start)))
    return out


def confident_softmax(view: RowView, cfg: HealthConfig) -> list[Condition]:
    if not view.has(OUTPUT_ACTIVATIONS):
        raise Skipped("needs OutputActivation (the softmax output's activation rate)")
    softmaxes = view.memo(("softmax", None), lambda: [
        (g, i) for g, i, t in view.layers(OUTPUT_ACTIVATIONS, "activation_rate") if is_softmax(g, t)])
    if not softmaxes:
        return []
    acc_idx = view.accuracy(cfg.accuracy_metric)
    acc = view.now(acc_idx)
    if not finite(acc) or acc >= cfg.low_accuracy:
        return []
    out = []
    for layer, idx in softmaxes:
        col = view.upto(idx)
        seen = col[np.isfinite(col)]
        rate = view.now(idx)
        if seen.size < 2 or not finite(rate):
            continue
        first = float(seen[0])
        if rate <= cfg.confident_share * first:
            out.append(Condition(
                "confident_softmax", "warning", layer, OUTPUT_ACTIVATIONS, rate,
                f"its activation rate fell from {pct(first)} to {pct(rate)} (confident predictions, near one class "
                f"per sample) while validation accuracy is only {pct(acc)}.",
                "the model is confidently wrong: regularise (dropout before the output, label smoothing, weight "
                "decay), lower the learning rate, or check the labels"))
    return out


def nonfinite(view: RowView, cfg: HealthConfig) -> list[Condition]:
    found: dict[str | None, Condition] = {}

    def add(layer: str | None, tag: str | None, what: str) -> None:
        if layer not in found:
            where = f"{what} in epoch {view.epoch:g}"
            found[layer] = Condition("nonfinite", "critical", layer, tag, None, f"NaN/Inf {where}.", _NONFINITE_ADVICE)

    for name in (view.train_name, view.val_name):
        idx = view.loss_col(name)
        if idx is None:
            continue
        v = view.now(idx)
        panel = view.run.columns[idx].panel
        foreign = view.panel_lens(panel) is None  # monitorch's inspector: NaN is a NaN loss, not a gap
        if np.isinf(v) or (foreign and np.isnan(v) and np.isfinite(view.upto(idx)[:-1]).any()):
            add(None, panel, f"{name}")
    for lens, message in view.new_problems:
        if "non-finite" in message and ("loss" in message or lens == "LossMetrics"):
            add(None, next((p for p in LOSS_PANELS if view.has(p)), None), "loss value(s)")
        elif "NaN/Inf" in message and ": " in message:
            layer = message.split(": ", 1)[0]
            tag = next((p.tag for p in view.run.panels if p.lens == lens and layer in view.run.groups(p.tag)), None)
            add(layer, tag, "outputs" if lens == "OutputActivation" else "gradients" if "Gradient" in lens else "values")
    if view.has(GRADIENT_NORM):
        foreign = view.panel_lens(GRADIENT_NORM) is None
        norms = view.first_line(GRADIENT_NORM)
        values = view.row_values(list(norms.values()))
        bad = np.isinf(values) | (np.isnan(values) if foreign else False)
        for k in np.flatnonzero(bad):
            add(list(norms)[k], GRADIENT_NORM, "gradient norm")
    return list(found.values())


def divergence(view: RowView, cfg: HealthConfig) -> list[Condition]:
    col = view.upto(view.train_loss())
    v = float(col[view.row])
    prev = col[: view.row]
    ok = np.isfinite(prev)
    if not finite(v) or not ok.any():
        return []
    best_row = int(np.flatnonzero(ok)[np.argmin(prev[ok])])
    best = float(prev[best_row])
    first = float(prev[ok][0])
    since = col[best_row + 1: view.row + 1]
    peak = float(since[np.isfinite(since)].max())  # the current value is finite: never empty
    if best <= 0 or v < cfg.divergence_factor * best or peak - best < cfg.divergence_giveback * (first - best):
        return []
    back = f", {(peak - best) / (first - best):.0%} of its fall from {sci(first)} at the first epoch" if first > best \
        else ""
    advice = "lower the learning rate (by 10x to start), clip gradients, and check for a bad batch or a data change"
    if _holds(view, cfg, "accumulating_gradient", accumulating_gradient):
        advice = ("fix the gradient accumulation first (see accumulating_gradient: is optimizer.zero_grad() "
                  "missing?); a lower learning rate would only delay this")
    return [Condition(
        "divergence", "critical", None, view.run.columns[view.train_loss()].panel, v,
        f"the training loss {sci(v)} is {v / best:.1f}x its best ({sci(best)} at epoch {view.epoch_of(best_row):g})"
        f"{back}: training is going backwards.", advice)]


def plateau(view: RowView, cfg: HealthConfig) -> list[Condition]:
    idx = view.train_loss()
    col = view.upto(idx)
    rows = np.flatnonzero(np.isfinite(col))
    if rows.size <= cfg.plateau_patience:
        return []
    vals = col[rows]
    # as ReduceLROnPlateau (mode min, threshold_mode rel): an epoch improves when it beats the best so far by
    # the relative threshold; a plateau is more than `patience` epochs without one
    best_before = np.minimum.accumulate(np.concatenate(([np.inf], vals[:-1])))
    improved = vals < best_before * (1 - cfg.plateau_threshold) if np.all(vals > 0) else vals < best_before
    last = int(np.flatnonzero(improved)[-1])
    bad = vals.size - 1 - last
    if bad <= cfg.plateau_patience:
        return []
    message = f"the training loss has not improved by {cfg.plateau_threshold:.0e} (relative) for {bad} epochs."
    advice = ("if validation is still poor, lower the learning rate (ReduceLROnPlateau) or add capacity; if it is "
              "good, stop training")
    stalled = _stalled_by(view, cfg)  # shared with the checks (it reads the conditions of this row's other checks)
    if stalled is not None:
        message, advice = f"{message} {stalled[0]}", stalled[1]
    return [Condition("plateau", "info", None, view.run.columns[idx].panel, float(vals[-1]), message, advice,
                      since=view.epoch_of(int(rows[last + 1])))]


def overfitting(view: RowView, cfg: HealthConfig) -> list[Condition]:
    val = view.upto(view.val_loss())
    train = view.upto(view.train_loss())
    v, t = float(val[view.row]), float(train[view.row])
    ok = np.isfinite(val)
    if not (finite(v) and finite(t)) or not ok.any():
        return []
    best_row = int(np.flatnonzero(ok)[np.argmin(val[ok])])
    best, t_best = float(val[best_row]), float(train[best_row])
    if best <= 0 or not finite(t_best):
        return []
    gl = 100 * (v / best - 1)
    if gl <= cfg.overfit_gl or t_best - t < cfg.overfit_fit * abs(t_best) or divergence(view, cfg):
        return []
    return [Condition(
        "overfitting", "warning", None, view.run.columns[view.val_loss()].panel, gl,
        f"the validation loss is {gl:.0f}% above its best (epoch {view.epoch_of(best_row):g}) while the training loss "
        f"fell {(t_best - t) / abs(t_best):.0%} below its value there (Prechelt's GL criterion).",
        "stop early (keep the weights of the best validation epoch), add regularisation (dropout, weight decay, "
        "augmentation), or get more data", need=cfg.overfit_epochs)]


# HealthMonitor._apply as it was: conditions -> findings (streaks, ids, until); the checks' conditions in the
# order they ran, the first one per (check, layer)
def apply(self: Any, run_id: int, epoch: float, state: Any, results: dict[str, list[Condition]],
          unmeasured: Any = None) -> tuple[list[Finding], list[str]]:
    holding: dict[tuple[str, str | None], Condition] = {}
    for conds in results.values():
        for cond in conds:
            holding.setdefault((cond.check, cond.layer), cond)
    findings = self._findings.setdefault(run_id, {})
    changed: list[Finding] = []
    reopened: list[str] = []
    streaks = {}
    for key in holding:
        first, n = state.streaks.get(key, (epoch, 0))
        streaks[key] = (first, n + 1)
    state.streaks = streaks
    for key, cond in holding.items():
        first, n = streaks[key]
        if n < cond.need:
            continue
        fid = f"{run_id}:{cond.check}:{cond.layer if cond.layer is not None else '-'}"
        since = cond.since if cond.since is not None else first
        old = findings.get(fid)
        milder = old is not None and old.active and SEVERITIES.index(cond.severity) > SEVERITIES.index(old.severity)
        if milder:  # the worse episode ends here, kept under its own id; the milder one starts here
            old.until = epoch
            since = epoch
        if old is not None and old.active:
            new = Finding(fid, run_id, cond.check, cond.severity, cond.layer, cond.tag, old.since, None,
                          cond.value, cond.message, cond.advice)
            if new.severity != old.severity or new.message != old.message or new.value != old.value:
                changed.append(new)
            findings[fid] = new
        else:
            past = findings.pop(fid, None)
            if past is not None:  # reopened: moves to the end; the earlier episode kept under its own id
                reopened.append(fid)
                episode = replace(past, id=f"{fid}#{past.since:g}")
                findings[episode.id] = episode
                changed.append(episode)
            findings[fid] = Finding(fid, run_id, cond.check, cond.severity, cond.layer, cond.tag, since, None,
                                    cond.value, cond.message, cond.advice)
            changed.append(findings[fid])
    held = {f"{run_id}:{c}:{layer if layer is not None else '-'}" for (c, layer) in holding}
    for fid, f in findings.items():
        # a stopped layer's finding, or one whose value is NaN/Inf in this row, did not end (not measured)
        if f.active and fid not in held and not (unmeasured and unmeasured(f)):
            f.until = epoch
            changed.append(f)
    return changed, reopened
