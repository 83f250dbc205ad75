"""Nothing silently unwatched: after ``attach``, one notice naming what no lens watches.

Checked only for the kinds of thing the user asked about: trainable parameters when a parameter lens
(``ParameterGradientActivation``) runs, activation-like leaf modules when an activation lens
(``OutputActivation``) runs, modules of an ``include=`` type that hold submodules (not leaves, so not
hooked); plus the watched activations whose rates carry no information (smooth ones,
see :mod:`.kinds`); and per lens, the modules it refused because they run inside a ``torch.compile`` graph
(:func:`attach_reports` gathers both).
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import nn

from ..collect.compiled import COMPILED_ADVICE, named_modules
from ..collect.faults import MonitorNotice, MonitorWarning, listed
from .base import AbstractLens
from .kinds import is_activation, is_sparse
from .output_activation import OutputActivation
from .output_norm import OutputNorm
from .parameter_lens import ParameterLens

#: torch's transformer layers: their ``activation`` is a module only when one was passed (else F.relu / F.gelu)
TRANSFORMER_LAYERS = (nn.TransformerEncoderLayer, nn.TransformerDecoderLayer)


def coverage_notice(model: nn.Module, lenses: Sequence[AbstractLens], sep: str = ".") -> str | None:
    """The notice text for ``model`` hooked by ``lenses``, or None when everything asked about is watched.
    ``sep``: the inspector's ``module_name_prefix``, which joins the names its sites carry (and the notice says)."""
    parts: list[str] = []
    modules = [(name.replace(".", sep), m) for name, m in named_modules(model)]
    param_lenses = [lens for lens in lenses if isinstance(lens, ParameterLens)]
    grad_lenses = [lens for lens in param_lenses if hasattr(lens, "watches_parameter")]
    if grad_lenses:
        unwatched = [f"{mname}{sep}{pname}" if mname else pname
                     for mname, module in modules
                     for pname, p in module._parameters.items()
                     if p is not None and p.requires_grad
                     and not any(lens.watches_parameter(pname) for lens in grad_lenses)]  # type: ignore[attr-defined]
        if unwatched:
            kinds = sorted({n.rsplit(sep, 1)[-1] for n in unwatched})
            lens_names = " / ".join(dict.fromkeys(lens.lens_name for lens in grad_lenses))
            parts.append(f"{len(unwatched)} trainable parameter(s) have no gradient lens: {listed(unwatched)}. "
                         f"To watch them, add their names or glob patterns to {lens_names}("
                         f"parameters=[...]), e.g. {listed(kinds)}")
    if len(param_lenses) > 1:
        # per lens: modules whose parameters another parameter lens watches and this one none of (weight_norm's
        # parametrizations.weight.original0/1 given to one lens only): its panel would lack them without a word
        watched = {lens: {mname for mname, module in modules
                          if any(p is not None and lens.pattern_of(pname) is not None
                                 for pname, p in module._parameters.items())} for lens in param_lenses}
        every = set().union(*watched.values())
        for plens in param_lenses:
            missing = [m for m in every if m not in watched[plens]]
            if missing:
                names = sorted({pname for mname, module in modules if mname in missing
                                for pname, p in module._parameters.items() if p is not None})
                parts.append(f"{plens.lens_name} watches no parameter of {len(missing)} module(s) another "
                             f"parameter lens watches: {listed(sorted(missing))}; add their parameter names to "
                             f"{plens.lens_name}(parameters=[...]), e.g. {listed(names)}")
    tied = dict.fromkeys(f"{alias!r} is {first!r}" for lens in param_lenses for alias, first in getattr(lens, "tied", []))
    if tied:
        shown = listed(list(tied), quote=False)
        parts.append(f"{len(tied)} tied parameter(s) are one tensor with another and are shown once, under the "
                     f"first name: {shown}")
    act_lenses = [lens for lens in lenses if hasattr(lens, "watches")]
    missed: list[str] = []
    if act_lenses:
        hooked = {site.name for lens in act_lenses for site in lens.sites}
        hooked |= {name for lens in act_lenses for name in lens.refused}  # said by the refusal itself
        leaves = [(name, m) for name, m in modules if not any(True for _ in m.children())]
        # left out on purpose (exclude=[T], activation=False) is the user's choice, not something to point out
        chosen = [name for name, m in leaves if any(
            (lens._exclude and isinstance(m, lens._exclude)) or not lens._activation  # type: ignore[attr-defined]
            for lens in act_lenses)]
        missed = [name for name, m in leaves if is_activation(m) and name not in hooked and name not in chosen]
        if missed:
            parts.append(f"{len(missed)} activation module(s) have no output lens: {listed(missed)} (left out by "
                         "the lens' include= / exclude=, or deeper than the inspector's depth=); watch them with "
                         "OutputActivation(include=[TheirType]) or a larger depth=")
        functional = [name for name, m in modules if isinstance(m, TRANSFORMER_LAYERS)
                      and not isinstance(getattr(m, "activation", None), nn.Module)]
        if functional:
            parts.append(f"{len(functional)} transformer layer(s) call their feed-forward activation as a function "
                         f"(activation='relu' or 'gelu', the default), which module hooks cannot see: "
                         f"{listed(functional)}; their feed-forward units have no activation or death rates. To "
                         "watch them, build the layers with a module: nn.TransformerEncoderLayer(..., "
                         "activation=nn.ReLU())")
        smooth = [name for name, m in leaves if name in hooked and is_activation(m) and not is_sparse(m)]
        if smooth:
            parts.append(f"{len(smooth)} watched activation(s) are smooth ({listed(smooth)}): their outputs are "
                         "almost never within eps of zero, so activation rates stay near 1 and death rates near 0 "
                         "whatever training does; read their OutputNorm instead")
    parts += [note for lens in param_lenses if (note := getattr(lens, "attach_notice", None))]
    deeper = bool(missed)  # activation modules exist, below depth= or left out: said above
    for lens in lenses:
        if isinstance(lens, (OutputActivation, OutputNorm)) and not lens.sites and not lens.refused and not deeper:
            held = "activation or dropout" if isinstance(lens, OutputActivation) else "activation"
            parts.append(f"{lens.lens_name} watches no module of this model: it holds no {held} module "
                         "(activations called as functions in forward, such as F.relu or torch.tanh, are invisible "
                         "to module hooks); use activation modules (nn.ReLU()), or name the layer types to watch: "
                         f"{lens.lens_name}(include=[nn.Linear])")
    include_lenses = [lens for lens in lenses if getattr(lens, "_include", ())]
    if include_lenses:
        # include=[T] where T modules hold submodules (nn.MultiheadAttention: out_proj; a user's block): output
        # lenses hook leaf modules only (monitorch's rule), so these would be skipped without a word
        hooked_here = {site.name for lens in include_lenses for site in lens.sites}
        inner = [f"{name} ({type(m).__name__})" for name, m in modules
                 if name and name not in hooked_here and any(True for _ in m.children())
                 and any(isinstance(m, lens._include) for lens in include_lenses)]  # type: ignore[attr-defined]
        if inner:
            parts.append(f"{len(inner)} module(s) of an include= type hold submodules, and output lenses watch leaf "
                         f"modules only (as monitorch): {listed(inner)} not watched; make them leaves with "
                         f"PyTorchInspector(depth=...) at their depth (dots in the name + 1; their output must then be a "
                         "tensor)")
    return "; ".join(parts) if parts else None


def attach_reports(model: nn.Module, lenses: Sequence[AbstractLens],
                   sep: str = ".") -> list[tuple[str, str, type[UserWarning]]]:
    """What to report once after ``attach``, as (source, message, category): the coverage notice, then each
    lens' modules refused inside a compiled graph (a ``MonitorWarning``: they are not watched)."""
    out: list[tuple[str, str, type[UserWarning]]] = []
    notice = coverage_notice(model, lenses, sep)
    if notice is not None:
        out.append(("attach", notice, MonitorNotice))
    for lens in lenses:
        if lens.refused:
            out.append((lens.lens_name, f"{len(lens.refused)} module(s) run inside a torch.compile graph and are "
                        f"not watched ({listed(lens.refused)}): {COMPILED_ADVICE}",
                        MonitorWarning))
    return out


