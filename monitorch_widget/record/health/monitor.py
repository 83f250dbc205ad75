"""HealthMonitor: runs the checks on each row that becomes final and keeps the runs' findings.

Invariant: every final row of a run is evaluated exactly once, in order (live ticks, a replayed saved history);
a condition becomes a finding once it has held for its ``need`` consecutive evaluated rows; a finding keeps its
id while its condition holds, gets ``until`` at the first row where it no longer does, and is reopened (same
id, new ``since``) if it returns; the earlier episode stays, resolved, as ``<id>#<its since>``. A check that
fails with an exception is reported once as a record problem and skipped; training never sees it.

Settled checks: a check whose conditions had all become findings at the previous row, and which returns the very
same list again (it promises the same conditions: ``layers.dead_layer`` when no rate and no threshold changed),
changes no finding; its streaks go on counting (a streak stores the evaluation it began at, not its length), so
it costs nothing per condition (a deep model's dead layers, row after row).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from . import accumulation, gradients, layers, loss
from .config import CHECKS, HealthConfig
from .finding import SEVERITIES, Condition, Finding
from .rows import RowView, Skipped, finite

if TYPE_CHECKING:
    from ..run import Run

Check = Callable[[RowView, HealthConfig], list[Condition]]
CHECK_FUNCTIONS: dict[str, Check] = {
    "nonfinite": loss.nonfinite,
    "divergence": loss.divergence,
    "plateau": loss.plateau,
    "overfitting": loss.overfitting,
    "dead_layer": layers.dead_layer,
    "dying_layer": layers.dying_layer,
    "dying_trend": layers.dying_trend,
    "confident_softmax": layers.confident_softmax,
    "vanishing_gradient": gradients.vanishing_gradient,
    "exploding_gradient": gradients.exploding_gradient,
    "update_ratio": gradients.update_ratio,
    "accumulating_gradient": accumulation.accumulating_gradient,
}
assert set(CHECK_FUNCTIONS) == set(CHECKS)


class _RunState:
    """Per run: streaks of raw conditions, the findings by id, and the problems already seen."""

    def __init__(self) -> None:
        self.evaluations = 0  # rows evaluated
        # per check: (check, layer) -> (first epoch, evaluation it began at) of each condition held at the
        # previous evaluated row (a streak of n rows began n - 1 evaluations ago)
        self.streaks: dict[str, dict[tuple[str, str | None, str | None], tuple[float, int]]] = {}
        # per check: its condition list at the previous evaluated row if every condition in it had held for its
        # `need` rows there (its findings are then exactly these conditions, active); a check that returns that
        # very list again (dead_layer, when no rate and no threshold changed) changes nothing
        self.settled: dict[str, list[Condition]] = {}
        # per check: the ids of its active findings -> their place in the run's findings (insertion order)
        self.active: dict[str, dict[str, int]] = {}
        self.placed = 0
        self.problems: dict[tuple[str, str], int] = {}
        self.evaluated = -1  # last evaluated row
        self.columns: dict[tuple[str, str | None], tuple[int, Any]] = {}  # RowView's column lookups
        self.scans: dict[Any, Any] = {}  # RowView's running folds over final rows (scans.py)
        self.ids: dict[tuple[str, str | None, str | None], str] = {}  # (check, layer, kind) -> finding id
        # checks that raised Skipped, with its message, while the run had these panels and columns and the
        # monitor this config and these loss names: a lasting Skipped depends on nothing else (no row value; a
        # check that skips at a row skips at every later row of the same shape), so they are not run again
        self.skips: dict[str, str] = {}
        self.skips_for: tuple[Any, ...] = ()


class HealthMonitor:
    """The record's health checks. ``configure`` changes thresholds; ``findings()`` reads the results.

    ``notify(changed, dropped)`` is called whenever findings changed: ``changed`` the findings raised, reopened,
    updated or resolved (raised and reopened ones in the order raised: they go last of their run), ``dropped``
    the ids to forget before ``changed`` is applied (a reopened finding, which moves last; a run's findings
    replaced by ``set_findings``). The record turns both into a ``findings`` event. ``report`` receives
    ``(source, message)`` when a check itself fails.
    """

    def __init__(self, notify: Callable[[list[Finding], list[str]], None] | None = None,
                 report: Callable[[str, str], None] | None = None) -> None:
        self.config = HealthConfig()
        self.loss_names: tuple[str, str] = ("train_loss", "val_loss")
        self._notify = notify
        self._report = report
        self._state: dict[int, _RunState] = {}
        self._findings: dict[int, dict[str, Finding]] = {}
        self.skipped: dict[str, str] = {}
        self._failed: set[str] = set()

    # --- configuration ---------------------------------------------------------------------------
    def configure(self, config: HealthConfig | None = None, /, **changes: Any) -> HealthConfig:
        """Replace the thresholds (``configure(HealthConfig(...))``) or change some (``configure(dead_rate=0.5)``);
        applies from the next recorded epoch on. Returns the config in force; raises ``TypeError`` for a
        non-HealthConfig or an unknown field, ``ValueError`` for a value out of range."""
        if config is not None and not isinstance(config, HealthConfig):
            raise TypeError(f"configure() takes a HealthConfig (or keyword thresholds), got {type(config).__name__}")
        base = (config or self.config).validated()
        self.config = base.with_changes(**changes) if changes else base
        return self.config

    # --- reading ---------------------------------------------------------------------------------
    def findings(self, run: int | None = None, *, active: bool | None = None) -> list[Finding]:
        """Findings of run id ``run`` (None: every run), in the order they were first raised; ``active=True``
        only those whose condition still holds, ``False`` only resolved ones."""
        runs = [run] if run is not None else sorted(self._findings)
        out = [f for r in runs for f in self._findings.get(r, {}).values()]
        return [f for f in out if active is None or f.active == active]

    def current_findings(self, runs: list[Run]) -> list[Finding]:
        """The active findings of the last of ``runs``; when it took no optimizer step (an evaluation only:
        Lightning's ``trainer.validate()`` / ``test()`` after ``fit``), those of the last run that trained: an
        evaluation has no training health of its own."""
        evaluation = bool(runs) and bool(runs[-1].steps) and not _trained(runs[-1])  # rows, and no step
        run = next((r for r in reversed(runs) if _trained(r) and not r.imported), None) if evaluation else None
        run = run or (runs[-1] if runs else None)
        return [] if run is None else self.findings(run.id, active=True)

    def as_dicts(self) -> list[dict[str, Any]]:
        """Every finding of every run as protocol dicts (the snapshot's and the delta's ``findings``)."""
        return [f.to_dict() for f in self.findings()]

    def set_findings(self, run: int, findings: list[Finding]) -> None:
        """Install saved findings for run ``run`` (a loaded or imported history); they are not re-evaluated.
        Notifies the run's previous findings as dropped and the new ones as changed, in their order."""
        old = self._findings.get(run, {})
        self._findings[run] = {f.id: f for f in findings}
        state = self._state.setdefault(run, _RunState())
        state.evaluated = 1 << 62  # its rows are final and already judged
        if (old or findings) and self._notify is not None:
            self._notify(list(self._findings[run].values()), list(old))

    # --- evaluation --------------------------------------------------------------------------------
    def evaluate(self, run: Run, row: int) -> bool:
        """Run the checks on final row ``row`` of ``run``; returns whether its findings changed."""
        state = self._state.get(run.id)
        if state is None:
            state = self._state[run.id] = _RunState()
        if row <= state.evaluated:
            return False
        state.evaluated = row
        view = RowView(run, row, self.loss_names,
                       [k for k, n in run.problems.items() if state.problems.get(k, 0) < n and k not in run.notices],
                       state.columns, state.scans)
        state.problems = dict(run.problems)
        enabled = self.config.enabled if self.config.enabled is not None else CHECKS
        results: dict[str, list[Condition]] = {}
        skipped: dict[str, str] = {}
        shape = (len(run.panels), len(run.columns), self.config, self.loss_names)
        if len(state.skips_for) != 4 or state.skips_for[:2] != shape[:2] or state.skips_for[2] is not self.config \
                or state.skips_for[3] != self.loss_names:
            state.skips, state.skips_for = {}, shape
        skips = state.skips
        for name in enabled:
            why = skips.get(name)
            if why is not None:
                skipped[name] = why
                continue
            try:
                # once per row: a check may read another's conditions (plateau reads vanishing_gradient's)
                results.setdefault(name, view.once(("check", name), CHECK_FUNCTIONS[name], view, self.config))
            except Skipped as exc:
                skipped[name] = str(exc)
                if exc.lasting:
                    skips[name] = skipped[name]
            except Exception as exc:  # noqa: BLE001 - a broken check must never stop training
                if name not in self._failed and self._report is not None:
                    self._failed.add(name)
                    self._report("health", f"check {name} failed with {type(exc).__name__}: {exc}")
        self.skipped = skipped
        paused = _unrecorded_at(run, view.epoch)
        changed, reopened = self._apply(run.id, view.epoch, state, results,
                                        lambda f: f.layer in paused or _value_lost(view, f))
        if changed and self._notify is not None:
            self._notify(changed, reopened)
        return bool(changed)

    def replay(self, run: Run) -> None:
        """Evaluate every final row of ``run`` in order (a history saved before findings existed)."""
        for row in range(run.final_rows):
            self.evaluate(run, row)

    def _apply(self, run_id: int, epoch: float, state: _RunState, results: dict[str, list[Condition]],
               unmeasured: Callable[[Finding], bool] | None = None) -> tuple[list[Finding], list[str]]:
        """Update run ``run_id``'s findings from the conditions each check found at ``epoch`` (check name ->
        its conditions, in the order the checks ran; a check's conditions carry its name, and the first one per
        layer counts). Returns the findings that changed (raised, reopened, updated, resolved; the raised and
        reopened ones in the order raised, the resolved ones in the run's order) and the ids of the reopened
        ones (they move last of their run)."""
        findings = self._findings.setdefault(run_id, {})
        changed: list[Finding] = []
        reopened: list[str] = []
        index = state.evaluations = state.evaluations + 1
        ids, active, was_settled = state.ids, state.active, state.settled
        streaks_now: dict[str, dict[tuple[str, str | None, str | None], tuple[float, int]]] = {}
        settled: dict[str, list[Condition]] = {}
        held: set[str] = set()
        for name, conds in results.items():
            if not conds:  # nothing held: no streak goes on, and its active findings (if any) end below
                continue
            if was_settled.get(name) is conds:  # the same conditions as at the previous row, all of them findings
                streaks_now[name] = state.streaks[name]
                settled[name] = conds
                continue
            previous = state.streaks.get(name, {})
            streaks = streaks_now[name] = {}
            mine = active.get(name)
            complete = True
            for cond in conds:
                key = (cond.check, cond.layer, cond.kind)
                if key in streaks:
                    continue
                streak = previous.get(key)
                if streak is None:
                    streak = (epoch, index)
                streaks[key] = streak
                fid = ids.get(key)
                if fid is None:
                    fid = ids[key] = (f"{run_id}:{cond.check}:{cond.layer if cond.layer is not None else '-'}"
                                      + (f":{cond.kind}" if cond.kind is not None else ""))
                held.add(fid)
                if index - streak[1] + 1 < cond.need:
                    complete = False
                    continue
                old = findings.get(fid)
                # milder now (critical -> warning): the worse episode ends here and is kept as it was, and the milder
                # one starts here, as a reopened finding (trial r12: a critical 'steps far too large' was rewritten
                # in place into a warning, its epoch-1 values lost); a worse one updates in place
                milder = old is not None and old.until is None and \
                    SEVERITIES.index(cond.severity) > SEVERITIES.index(old.severity)
                if milder and old is not None:
                    old.until = epoch
                if old is not None and old.until is None:
                    if not (cond.severity != old.severity or cond.message != old.message or cond.value != old.value):
                        if cond.tag == old.tag and cond.advice == old.advice:
                            continue  # the same finding: kept as it is (no new object per held condition and row)
                        same = True  # a new tag or advice only: kept as the new finding, not sent
                    else:
                        same = False
                    findings[fid] = new = Finding(fid, run_id, cond.check, cond.severity, cond.layer, cond.tag,
                                                  old.since, None, cond.value, cond.message, cond.advice)
                    if not same:
                        changed.append(new)
                else:
                    past = findings.pop(fid, None)
                    if past is not None:  # reopened: moves to the end, in the order raised
                        reopened.append(fid)
                        # its earlier episode stays, resolved, under an id of its own (since: episodes never overlap)
                        episode = replace(past, id=f"{fid}#{past.since:g}")
                        findings[episode.id] = episode
                        changed.append(episode)
                    since = epoch if milder else cond.since if cond.since is not None else streak[0]
                    findings[fid] = new = Finding(fid, run_id, cond.check, cond.severity, cond.layer, cond.tag,
                                                  since, None, cond.value, cond.message, cond.advice)
                    changed.append(new)
                    if mine is None:
                        mine = active[name] = {}
                    state.placed += 1
                    mine[fid] = state.placed
            if complete:
                settled[name] = conds
        state.streaks, state.settled = streaks_now, settled
        # resolved: the active findings of every check that did not find them again (a settled check finds all
        # of its own), in the run's order
        if not active:
            return changed, reopened
        # not measured is not resolved (``unmeasured``): a finding on a layer whose recording is stopped
        # (stop_recording), or whose value in this row is NaN/Inf (a diverged run: every batch left out), did not end
        ended = [(place, name, fid) for name, ids_of in active.items() if ids_of and (
            name not in settled or settled[name] is not was_settled.get(name)) for fid, place in ids_of.items()
            if fid not in held and not (unmeasured is not None and unmeasured(findings[fid]))]
        for _, name, fid in sorted(ended) if len(ended) > 1 else ended:
            del active[name][fid]
            f = findings[fid]
            f.until = epoch
            changed.append(f)
        return changed, reopened

    def forget(self, run_id: int) -> None:
        self._state.pop(run_id, None)
        self._findings.pop(run_id, None)


def _trained(run: Run) -> bool:
    """Whether an optimizer step was counted in ``run`` (its rows' step counts; NaN: an older history, unknown)."""
    return any(s > 0 or s != s for s in run.steps)


def _value_lost(view: RowView, f: Finding) -> bool:
    """Whether finding ``f`` could not be measured in ``view``'s row because values turned NaN/Inf: its layer's
    first line in its panel (a run-wide finding: the training loss) is not finite there, and either the training
    loss is not finite too (the run blew up: every batch left out) or the row's new problems name non-finite
    values of that layer. A value that is merely missing (a layer frozen since, a panel gone) ends a finding."""
    if f.layer is None:
        idx = view.loss_col(view.train_name)
    elif f.tag is not None and view.has(f.tag):
        idx = view.first_line(f.tag).get(f.layer)
    else:
        return False
    if idx is None or finite(view.now(idx)):
        return False
    loss = view.loss_col(view.train_name)
    if loss is not None and not finite(view.now(loss)):
        return True
    return any(("NaN/Inf" in m or "non-finite" in m) and (f.layer is None or m.startswith(f"{f.layer}: "))
               for _, m in view.new_problems)


def _unrecorded_at(run: Run, epoch: float) -> frozenset[str]:
    """The groups (layers) whose recording was stopped at ``epoch`` (``Run.unrecorded`` spans [first, last or
    None])."""
    if not run.unrecorded:
        return frozenset()
    return frozenset(g for g, spans in run.unrecorded.items()
                     if any(a is not None and a <= epoch and (b is None or epoch <= b) for a, b in spans))

