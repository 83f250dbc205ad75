"""Which forward passes count: the rule deciding whether a hooked module's output is a training batch.

monitorch's definition: a pass counts when grad is enabled and the module is in training mode; its
``evaluation_from_grad`` argument narrows that to one of the two, and ``record_eval=True`` counts every pass.
"""

from __future__ import annotations

import torch
from torch import nn

# Pass rules: which forward passes a hook counts.
COUNT_TRAINING = 0  # default: grad enabled and module.training
COUNT_GRAD_ENABLED = 1           # evaluation_from_grad=True
COUNT_TRAIN_MODE = 2           # evaluation_from_grad=False
COUNT_ALL = 3            # record_eval=True


def pass_rule_for(record_eval: bool, evaluation_from_grad: bool | None) -> int:
    if record_eval:
        return COUNT_ALL
    if evaluation_from_grad is None:
        return COUNT_TRAINING
    return COUNT_GRAD_ENABLED if evaluation_from_grad else COUNT_TRAIN_MODE


def is_counted_pass(pass_rule: int, module: nn.Module) -> bool:
    if pass_rule == COUNT_TRAINING:
        return torch.is_grad_enabled() and module.training
    if pass_rule == COUNT_GRAD_ENABLED:
        return torch.is_grad_enabled()
    if pass_rule == COUNT_TRAIN_MODE:
        return module.training
    return True

