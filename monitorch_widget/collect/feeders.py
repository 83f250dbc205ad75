"""Which layer fed an activation's output, read from the output's autograd graph: where its channel axis is.

An activation's channels are dim 1 after a convolution or a feature-map norm (``[B, C, H, W]``) and the last
dim after a linear layer (``[B, N, D]`` token MLPs). The module that feeds an activation is the one that ran
before it, which the model's definition order only suggests (an activation defined next to a linear layer but
applied after a convolution, one ``self.act`` shared by a convolution and a linear layer). The output of a
training pass carries its history: :func:`channels_last` walks it back from the activation's node to the node
that decides, following where each axis of the activation's output came from:

* through element-wise nodes (activations, in place or not, softmax, dropout, residual additions, products with
  a parameter, casts, LayerNorm), pooling, padding, upsampling and concatenation: the axes stay where they are;
* through ``transpose`` / ``permute``: the axes move with them;
* through a reshape that keeps the last dim: only the last dim is still known; one that moves it (a DCGAN-style
  ``Linear -> view(B, C, 4, 4)``) makes the result feature maps of a linear layer's features: dim 1 (for 4-D
  outputs and up; a 3-D view of a linear layer's features is left undecided);
* through a product with a broadcast gate (squeeze-and-excitation, FiLM): the operand of the output's shape;
* to ``ConvolutionBackward0`` (every ``ConvNd`` / ``ConvTransposeNd``) or a batch / group norm: its dim 1;
  to ``AddmmBackward0`` / ``MmBackward0`` (``nn.Linear``), a batched matmul (attention scores), an embedding
  or a recurrent layer's output: its last dim.

Anything else (no graph in a ``no_grad`` pass, a leaf, a reduction, an unknown node, a channel axis that ends
up elsewhere than dim 1 or the last dim) answers ``None``: the caller keeps its definition-order default. Node names are autograd's (``...Backward0``, in-place variants ``...Backward1``), stable across torch
2.x releases; the walk runs once per output shape of a module, never per batch.
"""

from __future__ import annotations

from typing import Any

import torch

_CHANNELS_FIRST = frozenset({
    "ConvolutionBackward", "NativeBatchNormBackward", "CudnnBatchNormBackward", "MiopenBatchNormBackward",
    "NativeGroupNormBackward",
})
# features along the last dim: linear layers, attention scores (keys), embeddings, recurrent layers' outputs
_LINEAR = frozenset({"AddmmBackward", "MmBackward", "BmmBackward", "EmbeddingBackward", "MkldnnRnnLayerBackward",
                     "CudnnRnnBackward", "MiopenRnnBackward"})
# the output has the shape of the (first non-parameter) input: every axis stays where it is
_SAME_SHAPE = frozenset({
    "ReluBackward", "GeluBackward", "SiluBackward", "SigmoidBackward", "TanhBackward", "LeakyReluBackward",
    "EluBackward", "HardtanhBackward", "HardswishBackward", "HardsigmoidBackward", "SoftplusBackward",
    "MishBackward", "ThresholdBackward", "PreluKernelBackward", "RreluWithNoiseBackward", "CeluBackward",
    "LogSigmoidBackward", "SoftshrinkBackward", "HardshrinkBackward", "SoftmaxBackward", "LogSoftmaxBackward",
    "MulBackward", "AddBackward", "SubBackward", "DivBackward", "NegBackward", "PowBackward", "ClampBackward",
    "ClampMinBackward", "ClampMaxBackward", "CloneBackward", "ToCopyBackward", "NativeDropoutBackward",
    "NativeLayerNormBackward", "AsStridedBackward", "CopySlices",
})
# the axes stay in place, some sizes change (spatial sizes, the concatenated axis, GLU's halved axis)
_SAME_AXES = frozenset({"CatBackward", "ConstantPadNdBackward", "GluBackward"})
_SAME_AXES_PREFIXES = ("MaxPool", "AvgPool", "AdaptiveMaxPool", "Upsample", "ReflectionPad", "ReplicationPad")
_VIEWS = frozenset({"ViewBackward", "UnsafeViewBackward", "ReshapeAliasBackward"})
_MAX_NODES = 24


def channels_last(y: torch.Tensor) -> bool | None:
    """True: ``y``'s channels are its last dim (fed by a linear layer); False: dim 1 (fed by a convolution or a
    batch / group norm); None: not known from its graph (see the module docstring)."""
    try:
        axis = _Walk(len(y.shape)).axis(y.grad_fn, list(range(y.dim())), tuple(y.shape), False)
    except Exception:  # noqa: BLE001 - a graph this walk does not understand: the caller's default
        return None
    if axis is None or y.dim() < 2:
        return None
    if axis == y.dim() - 1:
        return True
    return False if axis == 1 else None


class _Walk:
    """One walk back from an output's node, with a budget of nodes shared by its branches."""

    def __init__(self, ndim: int) -> None:
        self.ndim = ndim
        self.budget = _MAX_NODES

    def axis(self, node: Any, where: list[int | None], sizes: tuple[int, ...] | None, reshaped: bool) -> int | None:
        """The axis of the output that the producer's channels are, from ``node`` on. ``where[i]``: which axis of
        the output axis i of ``node``'s output is (None: lost in a reshape); ``sizes``: that output's shape (None
        once a node changed sizes it cannot follow); ``reshaped``: a reshape on the way moved the last dim."""
        while self.budget > 0:
            self.budget -= 1
            if node is None:
                return None
            name = type(node).__name__.rstrip("0123456789")
            if name in _CHANNELS_FIRST:
                return where[1] if len(where) > 1 else None
            if name in _LINEAR:
                if where and where[-1] is not None:
                    return where[-1]
                # a linear layer's features viewed as feature maps ([B, C, H, W]: a DCGAN generator); a 3-D view
                # ([B, N, D] tokens or [B, C, L]) could be either: not decided
                return 1 if reshaped and self.ndim >= 4 else None
            if name in _VIEWS:
                before = tuple(int(v) for v in node._saved_self_sym_sizes)
                kept: list[int | None] = [None] * len(before)
                if sizes is not None and before and sizes:
                    if len(before) >= 2 and len(sizes) >= 2 and before[:2] == sizes[:2]:  # [B, C, ...] flattened
                        kept[0], kept[1] = where[0], where[1]
                    if before[-1] == sizes[-1]:  # [B*N, D] -> [B, N, D]
                        kept[-1] = where[-1]
                reshaped = reshaped or kept[-1] is None
                where, sizes = kept, before
            elif name == "TransposeBackward":
                d0, d1 = node._saved_dim0 % len(where), node._saved_dim1 % len(where)
                where = list(where)
                where[d0], where[d1] = where[d1], where[d0]
                if sizes is not None:
                    s = list(sizes)
                    s[d0], s[d1] = s[d1], s[d0]
                    sizes = tuple(s)
            elif name == "PermuteBackward":
                dims = [d % len(where) for d in node._saved_dims]
                moved: list[int | None] = [None] * len(where)
                for out_axis, in_axis in enumerate(dims):
                    moved[in_axis] = where[out_axis]
                where = moved
                sizes = None if sizes is None else tuple(sizes[dims.index(i)] for i in range(len(dims)))
            elif name in _SAME_AXES or name.startswith(_SAME_AXES_PREFIXES):
                sizes = None
            elif name not in _SAME_SHAPE:
                return None
            inputs = _inputs(node, sizes)
            if len(inputs) > 1:  # a sum of two computed tensors (FiLM's g * x + b): the first branch that decides
                for branch in inputs:
                    found = self.axis(branch, where, sizes, reshaped)
                    if found is not None:
                        return found
                return None
            node = inputs[0] if inputs else None
        return None


def _inputs(node: Any, sizes: tuple[int, ...] | None) -> list[Any]:
    """The inputs of ``node`` the output's axes come from: of a product or quotient whose operands it saved, the
    operand of the output's own shape (not a broadcast gate: squeeze-and-excitation's ``w * x``); else every input
    that is not a parameter (``x + bias``, ``gamma * x``), or the first input."""
    inputs = [f for f, _ in node.next_functions]
    if sizes is not None and len(inputs) == 2:
        for i, attr in enumerate(("_saved_self", "_saved_other")):
            saved = getattr(node, attr, None)
            if isinstance(saved, torch.Tensor) and tuple(saved.shape) == sizes and inputs[i] is not None:
                return [inputs[i]]
    computed = [f for f in inputs if f is not None and type(f).__name__ != "AccumulateGrad"]
    return computed or [f for f in inputs if f is not None][:1]
