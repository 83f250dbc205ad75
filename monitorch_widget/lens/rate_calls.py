"""The rate lenses' per-layer calls (OutputActivation, ParameterGradientActivation): every layer's activation and
death rate of an epoch, read from the lens' bank as one table (:class:`~monitorch_widget.collect.summary.SlotTable`),
and the worst values for the warning panel."""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

from ..collect.hooks import VISIBILITY, Site
from ..collect.summary import SlotTable, Summary
from .base import AbstractLens, Call


def rate_calls(lens: AbstractLens, small_tag: str, sites: list[Site], summaries: dict[int, list[Summary]],
               act_method: str, death_method: str, warning: dict[str, float] | None) -> Call:
    """Per-layer activation/death rates; folds the worst values into ``warning`` (min act, max death)."""
    data: OrderedDict[str, dict[Any, float]] = OrderedDict()
    # the sites' bank read as one table (collect/summary.SlotTable): every layer's two points at once; a slot's
    # row in the table is its row in the bank (BankRow.index)
    table, bank = bank_table(summaries, sites)
    names: list[str] = []
    acts: list[float] = []
    deaths: list[float] = []
    bad: list[int] = []
    ranked: list[bool] | None = None  # None: every layer ranks for the warning panel
    shown = _shown_rows(lens, small_tag, sites, bank) if table is not None else None
    points = (table.points(act_method, 0), table.points(death_method, 1)) if table is not None else (None, None)
    if shown is not None and points[0] is not None and points[1] is not None:
        all_acts, all_deaths, all_bad = points[0], points[1], table.nonfinite()  # type: ignore[union-attr]
        names, visible, ranked = shown
        acts = [all_acts[r] for r in visible]
        deaths = [all_deaths[r] for r in visible]
        bad = [all_bad[r] for r in visible]
    else:
        for site in sites:
            if site.hidden:
                continue
            act, dead = summaries[id(site.stream)]
            names.append(site.name)
            if not site.ranked:
                ranked = [*(ranked or [True] * (len(names) - 1)), False]
            elif ranked is not None:
                ranked.append(True)
            acts.append(act.point(act_method))
            deaths.append(dead.point(death_method))
            bad.append(act.nonfinite)
    for name, a, d in zip(names, acts, deaths):
        data[name] = {"activation_rate": a, "death_rate": d}
    if warning is not None:
        # NaN (a layer without batches) never wins; a NaN current worst is always replaced. A layer whose rates
        # are set by its kind (an embedding's gradient rows) never does either.
        ranks = ranked if ranked is not None else [True] * len(acts)
        finite_acts = [a for a, r in zip(acts, ranks) if r and a == a]
        finite_deaths = [d for d, r in zip(deaths, ranks) if r and d == d]
        if finite_acts:
            worst = min(finite_acts)
            if not warning["worst activation_rate"] <= worst:
                warning["worst activation_rate"] = worst
        if finite_deaths:
            worst = max(finite_deaths)
            if not warning["worst death_rate"] >= worst:
                warning["worst death_rate"] = worst
    if any(bad):
        lens.ctx.faults.report_nonfinite(lens.lens_name, [(n, k) for n, k in zip(names, bad) if k], "batches",
                                         "the rates")
    return Call("probability", small_tag, data)


def _shown_rows(lens: AbstractLens, tag: str, sites: list[Site], bank: Any
                ) -> tuple[list[str], list[int], list[bool] | None] | None:
    """(names, rows in ``bank``'s table, whether each ranks for the warning panel: None when all do) of the
    ``sites`` shown (not hidden), or None when some site's slot is in another bank. Kept per lens and tag while the site list, the bank and every site's hidden flag stay as they
    were (``hooks.VISIBILITY``): a deep model's tick then touches no site object here (a cold cache miss each)."""
    cache: dict[str, tuple[Any, ...]] = lens.__dict__.setdefault("_shown_rows", {})
    hit = cache.get(tag)
    if hit is not None and hit[0] is sites and hit[1] == len(sites) and hit[2] is bank and hit[3] == VISIBILITY[0]:
        return hit[4]  # type: ignore[no-any-return]
    if not all(getattr(s.stream, "bank", None) is bank for s in sites):
        return None
    shown = [s for s in sites if not s.hidden]
    ranks = [s.ranked for s in shown]
    out = ([s.name for s in shown], [s.stream.index for s in shown],  # type: ignore[union-attr]
           None if all(ranks) else ranks)
    cache[tag] = (sites, len(sites), bank, VISIBILITY[0], out)
    return out


def bank_table(summaries: dict[int, list[Summary]], sites: list[Site]) -> tuple[SlotTable | None, Any]:
    """(the table of the bank the first site's slot belongs to, that bank), or (None, None) when ``summaries``
    holds no table for it (a few slots, kept per-batch values: read as Summary objects)."""
    find = getattr(summaries, "table", None)
    bank = getattr(sites[0].stream, "bank", None) if sites else None
    if find is None or bank is None:
        return None, None
    table = find(bank)
    return (table, bank) if table is not None else (None, None)


def new_warning() -> dict[str, float]:
    return {"worst activation_rate": float("nan"), "worst death_rate": float("nan")}
