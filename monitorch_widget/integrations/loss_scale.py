"""The Hugging Face Trainer's training-loss scale under gradient accumulation (huggingface/transformers#37766).

Imports no framework: the rule reads the model's ``forward`` only.
"""

from __future__ import annotations

import inspect
import re

from torch import nn

# `self.loss_function(..., **kwargs)`: transformers' loss functions take num_items_in_batch through **kwargs (one
# level of nested parentheses inside the call, e.g. logits.view(-1, n), is allowed)
_PASSES_LOSS_KWARGS = re.compile(r"loss_function\((?:[^()]|\([^()]*\))*\*\*kwargs")


def loss_times_accumulation(model: nn.Module) -> bool:
    """Whether the Trainer logs (and back-propagates) ``gradient_accumulation_steps`` x the mean loss for
    ``model`` (huggingface/transformers#37766), as transformers 5.x decides it.

    ``Trainer.training_step`` divides the micro-batch loss by the accumulation steps unless it counts the loss
    as already normalised by ``num_items_in_batch``: when the model "accepts loss kwargs" (its
    ``accepts_loss_kwargs`` attribute, else a ``**kwargs`` in its ``forward``; ``Trainer.__init__``). A model
    whose ``forward`` takes ``**kwargs`` but computes a plain per-batch mean (``BertForSequenceClassification``
    and most ``*ForSequenceClassification`` heads: ``CrossEntropyLoss()`` on the logits) never uses it, so
    each micro-batch's full mean is summed. Told apart here by the source of ``forward``: a loss normalised by
    the Trainer's count is handed to ``self.loss_function(..., **kwargs)`` or named ``num_items_in_batch`` (a
    ``self.loss_function(labels, logits, config)`` without them is a plain mean too). False when the
    source cannot be read (no notice rather than a wrong one). A ``compute_loss_func`` given to the Trainer
    is not visible to a callback."""
    base = getattr(model, "get_base_model", None)  # a PEFT model: the Trainer inspects the base model
    if callable(base):
        model = base()
    accepts = getattr(model, "accepts_loss_kwargs", None)
    if accepts is None:
        try:
            params = inspect.signature(model.forward).parameters.values()
        except (TypeError, ValueError):
            return False
        accepts = any(p.kind == inspect.Parameter.VAR_KEYWORD for p in params)
    if not accepts:
        return False
    try:
        source = inspect.getsource(type(model).forward)
    except (OSError, TypeError):
        return False
    return "num_items_in_batch" not in source and _PASSES_LOSS_KWARGS.search(source) is None
