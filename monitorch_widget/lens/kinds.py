"""Which modules count as activations or dropout (``isinstance``, so subclasses count too)."""

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


def is_activation(module: nn.Module) -> bool:
    return isinstance(module, ACTIVATIONS)


def is_dropout(module: nn.Module) -> bool:
    return isinstance(module, DROPOUTS)


def is_nonnegative(module: nn.Module) -> bool:
    # A subclass may override forward: only trust the exact classes.
    return type(module) in NONNEGATIVE


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
