"""Which modules count as activations or dropout, and which activations have informative rates.

The rule (documented in the README): a module is an activation when

1. it is an instance of a ``torch.nn`` activation (below) or of a type passed to :func:`register_activation`;
2. or its class is defined in one of ``ACTIVATION_LIBRARIES`` (transformers' ``SiLUActivation``,
   ``GELUActivation`` ..., timm's activation layers), except the identity ``LinearActivation``;
3. or its class name ends in ``Activation`` (the convention those libraries share).

An activation is *sparse* when its output is exactly zero on a whole region of inputs (ReLU and its
relatives, shrinkage, hard-sigmoid/swish, dropout) or saturates below eps (sigmoid, softmax): only then do
"share of outputs above eps" and "channels never active" say something. Smooth activations (SiLU, GELU, tanh,
ELU, leaky ReLU, ...) are almost never within eps of zero, so their rates sit near 1 and 0 whatever training does: they are
watched, and the inspector says once that their rates are not informative.
"""

from __future__ import annotations

from torch import nn

ACTIVATIONS: tuple[type[nn.Module], ...] = (
    nn.CELU, nn.ELU, nn.GELU, nn.GLU, nn.Hardshrink, nn.Hardsigmoid, nn.Hardswish, nn.Hardtanh,
    nn.LeakyReLU, nn.LogSigmoid, nn.LogSoftmax, nn.Mish, nn.PReLU, nn.ReLU, nn.ReLU6, nn.RReLU, nn.SELU,
    nn.Sigmoid, nn.SiLU, nn.Softmax, nn.Softmax2d, nn.Softmin, nn.Softplus, nn.Softshrink, nn.Softsign,
    nn.Tanh, nn.Tanhshrink, nn.Threshold,
)
DROPOUTS: tuple[type[nn.Module], ...] = (
    nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d, nn.AlphaDropout, nn.FeatureAlphaDropout,
)
# Outputs are >= 0 (or NaN) for these, so |y| > eps reduces to y > eps: one op less per batch.
NONNEGATIVE: tuple[type[nn.Module], ...] = (
    nn.ReLU, nn.ReLU6, nn.Sigmoid, nn.Softmax, nn.Softmax2d, nn.Softmin, nn.Softplus, nn.Hardsigmoid,
)


ACTIVATION_LIBRARIES = ("transformers.activations", "timm.layers.activations", "timm.models.layers.activations")
NOT_ACTIVATIONS = ("LinearActivation", "ClassInstantier", "Identity")
SPARSE: tuple[type[nn.Module], ...] = (
    nn.ReLU, nn.ReLU6, nn.Threshold, nn.Hardshrink, nn.Softshrink, nn.Hardswish, nn.Hardsigmoid,
    # saturating: outputs underflow below eps for confident inputs (a softmax output layer's rate falls
    # towards one class per sample)
    nn.Sigmoid, nn.Softmax, nn.Softmax2d, nn.Softmin, nn.LogSoftmax,
)
_registered: dict[type[nn.Module], bool] = {}  # type -> sparse


def register_activation(module_type: type[nn.Module], *, sparse: bool = False) -> None:
    """Count ``module_type`` (and its subclasses) as an activation; ``sparse=True`` when its output is exactly
    zero on a region of inputs (as ReLU's), so its activation and death rates are informative."""
    if not (isinstance(module_type, type) and issubclass(module_type, nn.Module)):
        raise TypeError(f"register_activation needs an nn.Module subclass, got {module_type!r}")
    _registered[module_type] = bool(sparse)


def is_activation(module: nn.Module) -> bool:
    if isinstance(module, ACTIVATIONS) or isinstance(module, tuple(_registered)):
        return True
    cls = type(module)
    if cls.__name__ in NOT_ACTIVATIONS:
        return False
    return cls.__module__.startswith(ACTIVATION_LIBRARIES) or cls.__name__.endswith("Activation")


def is_sparse(module: nn.Module) -> bool:
    """Whether the rates of this activation (or dropout) module mean something (see the module docstring)."""
    for t, sparse in _registered.items():
        if isinstance(module, t):
            return sparse
    if isinstance(module, SPARSE) or is_dropout(module):
        return True
    name = type(module).__name__
    return "ReLU" in name and not any(k in name for k in ("Leaky", "PReLU", "RReLU", "CELU", "SELU", "GELU"))


#: modules whose weight gradient has a row per vocabulary entry, zero for each entry a batch does not use: their
#: gradient death rate is 1 - the share of the vocabulary in the batch, by construction
SPARSE_GRADIENT_ROWS: tuple[type[nn.Module], ...] = (nn.Embedding, nn.EmbeddingBag)


def is_dropout(module: nn.Module) -> bool:
    return isinstance(module, DROPOUTS)


def is_nonnegative(module: nn.Module) -> bool:
    # A subclass may override forward: only trust the exact classes.
    return type(module) in NONNEGATIVE


# Layers whose output keeps features on the last dim ([B, N, D]) vs on dim 1 ([B, C, H, W]).
_LINEAR_LIKE = (nn.Linear, nn.Bilinear, nn.Embedding, nn.EmbeddingBag, nn.LayerNorm, nn.MultiheadAttention,
                nn.RNNBase)
_LINEAR_LIKE_NAMES = ("Conv1D", "RMSNorm")  # transformers' GPT-2 Conv1D; RMSNorm variants of many libraries
_MAP_LIKE = (nn.modules.conv._ConvNd, nn.modules.batchnorm._BatchNorm, nn.GroupNorm,
             nn.modules.instancenorm._InstanceNorm, nn.LocalResponseNorm)


def is_linear_like(module: nn.Module) -> bool:
    return isinstance(module, _LINEAR_LIKE) or any(type(module).__name__.endswith(n) for n in _LINEAR_LIKE_NAMES)


def is_map_like(module: nn.Module) -> bool:
    return isinstance(module, _MAP_LIKE)


def check_module_types(value: object, argument: str) -> tuple[type[nn.Module], ...]:
    """Validate an include/exclude argument: an iterable of ``torch.nn.Module`` subclasses."""
    if isinstance(value, type):
        value = (value,)
    if isinstance(value, (str, bytes)) or not hasattr(value, "__iter__"):
        raise TypeError(f"{argument}= must be an iterable of torch.nn.Module subclasses, e.g. "
                        f"{argument}=[nn.Linear]; got {value!r}")
    types = tuple(value)  # type: ignore[arg-type]
    for t in types:
        if not (isinstance(t, type) and issubclass(t, nn.Module)):
            raise TypeError(f"{argument}= entries must be torch.nn.Module subclasses (e.g. nn.Linear), "
                            f"got {t!r}")
    return types
