"""OutputActivation: share of non-zero outputs per neuron/channel, and share of dead channels."""

from __future__ import annotations

import fnmatch
from collections import OrderedDict
from collections.abc import Iterable, Mapping

from torch import nn

from ..collect.activation_site import ActivationSite
from ..collect.compiled import named_modules
from ..collect.faults import listed
from ..collect.passes import pass_rule_for
from ..collect.scratch import ScratchPool
from ..collect.streams import StreamBank
from ..collect.summary import Summary, as_method_list, needs_all_values
from .base import AbstractLens, Call, TagAttributes, TagType
from .kinds import check_module_types, is_activation, is_dropout, is_linear_like, is_map_like, is_nonnegative
from .rate_calls import new_warning, rate_calls
from .silent import say_silent


class OutputActivation(AbstractLens):
    """Activation rate (mean share of outputs with |y| > eps) and death rate (share of channels never
    active in a batch) of activation and dropout modules, averaged over an epoch's training batches.

    Same arguments as ``monitorch.lens.OutputActivation``; ``evaluation_from_grad=None`` (default) counts a
    forward pass as training only when grad is enabled *and* the module is in training mode.

    The channel (neuron) axis of an output follows the layer that feeds the activation: with
    ``channel_last=False`` (default) it is dim 1 after convolutions and norms of feature maps
    (``[B, C, H, W]``), and the last dim after linear-like layers (``[B, N, D]`` token MLPs). The feeding
    layer is read from the output's autograd graph at the first training call of each output shape (the
    convolution, linear layer or batch / group norm it came from: :mod:`monitorch_widget.collect.feeders`), so
    an activation applied after another layer than its definition-order neighbour, or shared by a convolution
    and a linear layer, gets each call's own axis; where the graph does not tell (no grad, an op the reading
    does not follow), the nearest module with parameters before the activation in definition order decides,
    and a shared activation whose callers' outputs have the same shape keeps its first call's axis. ``channel_dim``
    overrides it per module: ``{"blocks.*.act": -1, "stem.relu": 1}`` (glob patterns on module names; one that
    matches no watched module raises ``ValueError`` at attach). ``channel_last=True`` takes the last dim
    everywhere ``channel_dim`` does not say otherwise (monitorch's meaning).
    """

    _SMALL_TAG_NAME = "Output Activations"
    _BIG_TAG_NAME = "Warning Output Activations"

    def __init__(self, inplace: bool = True, record_eval: bool = False, evaluation_from_grad: bool | None = None,
                 activation: bool = True, dropout: bool = True, include: Iterable[type[nn.Module]] = (),
                 exclude: Iterable[type[nn.Module]] = (), channel_last: bool = False, warning_plot: bool = True,
                 activation_aggregation: str = "mean", death_aggregation: str = "mean", eps: float = 1e-8,
                 channel_dim: Mapping[str, int] | None = None) -> None:
        super().__init__()
        self._channel_dim = dict(channel_dim or {})
        for pattern, dim in self._channel_dim.items():
            if not isinstance(pattern, str) or dim not in (1, -1):
                raise ValueError(f"channel_dim={channel_dim!r}: keys are module-name patterns, values 1 (channels "
                                 "first, [B, C, ...]) or -1 (channels last, [B, ..., C])")
        self._include = check_module_types(include, "include")
        self._exclude = check_module_types(exclude, "exclude")
        self._act_method = as_method_list(activation_aggregation, argument="activation_aggregation", ranges=False)[0]
        self._death_method = as_method_list(death_aggregation, argument="death_aggregation", ranges=False)[0]
        self._keep_all = (not inplace) or needs_all_values([self._act_method, self._death_method])
        self._gate = pass_rule_for(record_eval, evaluation_from_grad)
        self._activation = bool(activation)
        self._dropout = bool(dropout)
        self._channel_last = bool(channel_last)
        self._warning_plot = bool(warning_plot)
        self._eps = float(eps)
        self._bank = StreamBank(2, self._keep_all)
        self._pool = ScratchPool()

    def tags(self) -> list[tuple[str, TagAttributes]]:
        tags = [(self._SMALL_TAG_NAME, TagAttributes(False, False, True, TagType.PROBABILITY))]
        if self._warning_plot:
            tags.append((self._BIG_TAG_NAME, TagAttributes(False, True, True, TagType.PROBABILITY)))
        return tags

    def watches(self, module: nn.Module) -> bool:
        if self._exclude and isinstance(module, self._exclude):
            return False
        return bool((self._include and isinstance(module, self._include))
                    or (self._activation and is_activation(module))
                    or (self._dropout and is_dropout(module)))

    def register_module(self, module: nn.Module, name: str, leaf: bool) -> None:
        if leaf and self.watches(module) and not self.refuse_traced(module, name):
            self._sites.append(ActivationSite(
                name, module, self.lens_name, self.ctx.faults, pass_rule=self._gate, eps=self._eps,
                channel_last=self._channel_last, nonneg=is_nonnegative(module), keep_all=self._keep_all,
                slot=self._bank.add_row(), pool=self._pool))

    def after_attach(self, model: nn.Module) -> None:
        """Decide each activation's channel axis: ``channel_dim`` where a pattern matches, else the last dim with
        ``channel_last=True``, else from the layer that feeds it (see the class docstring). Raises
        ``ValueError`` for a ``channel_dim`` pattern that matches no watched module (a typo would otherwise leave
        the wrong axis silently)."""
        names = [site.name for site in self._sites]
        unmatched = [p for p in self._channel_dim if not any(fnmatch.fnmatchcase(n, p) for n in names)]
        if unmatched:
            shown = listed(names, 12)
            raise ValueError(f"OutputActivation(channel_dim=...): no watched activation module matches "
                             f"{', '.join(repr(p) for p in unmatched)}; keys are glob patterns on module names, and "
                             f"the watched modules are: {shown or '(none)'}")
        feeder: dict[str, bool] = {}  # module name -> fed by a linear-like layer
        if not self._channel_last:
            last_linear = False
            for name, module in named_modules(model):  # definition order
                if is_linear_like(module):
                    last_linear = True
                elif is_map_like(module):
                    last_linear = False
                feeder[name] = last_linear
        for site in self._sites:
            assert isinstance(site, ActivationSite)
            dim = next((d for pattern, d in self._channel_dim.items() if fnmatch.fnmatchcase(site.name, pattern)), None)
            if dim is not None:
                site.channel_last = site.default_last = dim == -1
                site.auto_axis = False
            elif not self._channel_last:
                site.channel_last = site.default_last = feeder.get(site.name, False)
                site.auto_axis = True  # the layer that feeds it at run time decides (collect/feeders.py)

    def detach(self) -> None:
        super().detach()
        self._bank = StreamBank(2, self._keep_all)

    def compute(self, summaries: dict[int, list[Summary]]) -> list[Call]:
        say_silent(self, summaries)
        warning = new_warning() if self._warning_plot else None
        calls = [rate_calls(self, self._SMALL_TAG_NAME, self._sites, summaries, self._act_method,
                            self._death_method, warning)]
        if warning is not None:
            calls.append(Call("probability", self._BIG_TAG_NAME, OrderedDict([(self._BIG_TAG_NAME, warning)])))
        return calls
