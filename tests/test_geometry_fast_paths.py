"""collect/geometry.py's ``norms`` and ``dots`` take a fast path in the usual case (float32 tensors; 1-D float32
pairs written into ``out``) and fall back to the checked one otherwise: both give what plain torch gives, and
the fast path the same values as the pair-by-pair one."""

from __future__ import annotations

import pytest
import torch

from monitorch_widget.collect.geometry import dots, norms

F32, F64 = torch.float32, torch.float64


def tensors(dtypes: list[torch.dtype], shapes: list[tuple[int, ...]], seed: int = 0) -> list[torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return [torch.randn(s, generator=gen).to(d) for d, s in zip(dtypes, shapes)]


SHAPES = [(130, 64), (64,), (3, 5, 7)]


@pytest.mark.parametrize("dtypes", [[F32] * 3, [F32, F64, torch.bfloat16], [torch.bfloat16] * 3, [F64] * 3])
def test_norms_equal_plain_torch_for_every_dtype_mix(dtypes):
    xs = tensors(dtypes, SHAPES)
    wide = any(d is F64 for d in dtypes)
    want = torch.stack([torch.linalg.vector_norm(x, dtype=F64 if wide else F32) for x in xs]).to(F32)
    assert torch.equal(norms(xs), want)
    out = torch.full((3,), -1.0)
    assert norms(iter(xs), out=out) is out and torch.equal(out, want)  # any iterable, into out


def test_norms_report_what_torch_refuses():
    with pytest.raises(RuntimeError, match="floating point"):
        norms([torch.ones(3), torch.arange(4)])


def pairwise(a: list[torch.Tensor], b: list[torch.Tensor]) -> torch.Tensor:
    """<a_i, b_i> by hand: in float64 from the values each dtype holds, rounded once per pair."""
    return torch.stack([(x.double() * y.double()).sum() for x, y in zip(a, b)])


@pytest.mark.parametrize("case", ["flat float32", "shaped", "mixed dtypes", "bfloat16", "float64"])
def test_dots_into_out_equal_the_pair_by_pair_path_and_plain_torch(case):
    shapes = [(8320,), (64,), (4096,)]
    dtypes = {"flat float32": [F32] * 3, "shaped": [F32] * 3, "mixed dtypes": [F32, F64, F32],
              "bfloat16": [torch.bfloat16] * 3, "float64": [F64] * 3}[case]
    if case == "shaped":
        shapes = SHAPES
    a, b = tensors(dtypes, shapes, 1), tensors(dtypes, shapes, 2)
    if case == "mixed dtypes":
        b[1] = b[1].float()  # a float32 pair member against a float64 one: torch.dot refuses the pair
    out = torch.full((3,), -1.0)
    assert dots(a, b, out=out) is out
    slow = dots(a, b)  # without out: always pair by pair
    assert slow.dtype is F32 and torch.equal(out, slow)
    tolerance = {F32: 1e-5, F64: 1e-6, torch.bfloat16: 2e-2}[dtypes[0]]
    torch.testing.assert_close(out.double(), pairwise(a, b), rtol=tolerance, atol=tolerance)
