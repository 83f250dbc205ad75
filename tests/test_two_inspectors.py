"""Two inspectors on one model: with a lens type in common the second replaces the first (a re-run cell), and the
first one's ``tick_epoch()`` then says why it is detached instead of only that it is; with disjoint lens sets both
stay attached and record, as in monitorch.

Found on real code: a notebook whose second cell built another inspector for the same model, then ticked both;
the first raised "the inspector was detached" with no reason. The second one's values are checked by hand.
"""

from __future__ import annotations

import warnings

import pytest
import torch
from torch import nn

from monitorch_widget import MonitorNotice, PyTorchInspector
from monitorch_widget.lens import LossMetrics, OutputActivation, ParameterNorm


def test_the_replaced_inspector_says_why_it_cannot_tick():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU())
    first = PyTorchInspector([OutputActivation()], visualizer="none", module=model)
    with pytest.warns(MonitorNotice, match="attached to another inspector"):
        second = PyTorchInspector([OutputActivation()], visualizer="none", module=model)
    xs = [torch.randn(6, 4) for _ in range(2)]
    for x in xs:
        model(x).sum().backward()
    with pytest.raises(RuntimeError, match="another inspector sharing a lens type with this one was attached to this Sequential"):
        first.tick_epoch()
    second.tick_epoch()
    with torch.no_grad():
        want = sum(float((model(x) > 1e-8).float().mean()) for x in xs) / len(xs)
    assert second.history.series("Output Activations", "1", "activation_rate")[-1] == pytest.approx(want, rel=1e-6)
    with pytest.warns(MonitorNotice, match="attached to another inspector"):
        first.attach(model)  # taking the model back: the first one ticks again, the second is the replaced one
    model(xs[0]).sum().backward()
    first.tick_epoch()
    with pytest.raises(RuntimeError, match="another inspector sharing a lens type with this one was attached"):
        second.tick_epoch()
    first.detach()


def test_lens_objects_given_to_a_second_inspector_move_to_it():
    """A re-run cell that builds a new inspector (and model) from lens objects an earlier cell made: the earlier
    inspector is detached with a notice instead of both sharing the lenses' sites (it recorded NaN and
    ParameterNorm failed with IndexError). The new one's loss and parameter norms are checked by hand."""
    loss_fn = nn.MSELoss()
    lenses = [LossMetrics(loss_fn=loss_fn), OutputActivation(), ParameterNorm()]

    def cell():
        torch.manual_seed(0)
        model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))
        inspector = PyTorchInspector(lenses, visualizer="none", module=model)
        opt = torch.optim.SGD(model.parameters(), lr=0.1)
        losses = []
        for _ in range(3):
            opt.zero_grad()
            loss = loss_fn(model(torch.randn(8, 4)), torch.randn(8, 2))
            loss.backward()
            opt.step()
            losses.append(loss.item())
        inspector.tick_epoch()
        return inspector, model, losses

    first, _, _ = cell()
    with pytest.warns(MonitorNotice, match="belonged to another attached inspector"):
        second, model, losses = cell()
    assert second.history.series("Loss", "Loss", "train_loss mean")[-1] == pytest.approx(sum(losses) / 3, rel=1e-6)
    want = float(torch.linalg.vector_norm(model[0].weight.detach()))
    assert second.history.series("Weight Norm", "0", "mean")[-1] == pytest.approx(want, rel=1e-5)
    with pytest.raises(RuntimeError, match="another inspector took its lens objects"):
        first.tick_epoch()
    second.detach()


def test_inspectors_with_disjoint_lens_sets_both_record():
    """monitorch's pattern: one inspector for output activations, another for parameter norms, on one model; both
    tick (ours once detached the first). Values by hand."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU())
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no notice: nothing is replaced
        first = PyTorchInspector([OutputActivation()], visualizer="none", module=model)
        second = PyTorchInspector([ParameterNorm()], visualizer="none", module=model)
    x = torch.randn(6, 4)
    model(x).sum().backward()
    first.tick_epoch()
    second.tick_epoch()
    with torch.no_grad():
        want = float((model(x) > 1e-8).float().mean())
    assert first.history.series("Output Activations", "1", "activation_rate")[-1] == pytest.approx(want, rel=1e-6)
    norm = float(torch.linalg.vector_norm(model[0].weight.detach()))
    assert second.history.series("Weight Norm", "0", "mean")[-1] == pytest.approx(norm, rel=1e-5)
    # a third one with a lens type in common with the first (a re-run of its cell) replaces that one only
    with pytest.warns(MonitorNotice, match=r"a lens type of this one \(OutputActivation\)"):
        third = PyTorchInspector([OutputActivation()], visualizer="none", module=model)
    with pytest.raises(RuntimeError, match="sharing a lens type"):
        first.tick_epoch()
    model(x).sum().backward()
    second.tick_epoch()
    third.tick_epoch()
    for ins in (second, third):
        ins.detach()


def test_a_criterion_shared_by_two_inspectors_is_said():
    """Trial r15b: two inspectors on two models given one nn.MSELoss object both recorded the mean of both models'
    losses (50.6 for 1.1 and 100.1) without a word. A criterion hooked by two attached inspectors is named once;
    separate criterion objects record each model's own losses."""
    import warnings

    from monitorch_widget import MonitorNotice

    def run(shared: bool) -> tuple[list[str], float, float]:
        crit = nn.MSELoss()
        a_model, b_model = nn.Linear(1, 1), nn.Linear(1, 1)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            a = PyTorchInspector([LossMetrics(loss_fn=crit)], visualizer="none", module=a_model)
            b = PyTorchInspector([LossMetrics(loss_fn=crit if shared else nn.MSELoss())], visualizer="none",
                                 module=b_model)
            x = torch.ones(4, 1)
            with torch.no_grad():
                a_model.weight.fill_(1.0), a_model.bias.fill_(0.0)
                b_model.weight.fill_(10.0), b_model.bias.fill_(0.0)
            a_crit = crit
            b_crit = crit if shared else b.lenses[0]._loss_fn
            a_crit(a_model(x), torch.zeros(4, 1)).backward()   # 1.0
            b_crit(b_model(x), torch.zeros(4, 1)).backward()   # 100.0
            a.tick_epoch()
            b.tick_epoch()
        said = [str(c.message) for c in caught if issubclass(c.category, MonitorNotice)]
        return (said, float(a.history.series("Loss", "Loss", "train_loss mean")[0]),
                float(b.history.series("Loss", "Loss", "train_loss mean")[0]))

    said, a_loss, b_loss = run(shared=True)
    assert sum("loss_fn of LossMetrics (MSELoss) is the same object as that of another inspector" in s
               for s in said) == 1, said  # said by the first to tick (the other model trained too)
    assert a_loss == b_loss == pytest.approx(50.5)  # the mixing the notice warns about
    said, a_loss, b_loss = run(shared=False)
    assert not [s for s in said if "loss_fn" in s], said
    assert (a_loss, b_loss) == (pytest.approx(1.0), pytest.approx(100.0))


def test_one_criterion_for_inspectors_used_one_after_the_other_is_not_said():
    """The seed tutorial's pattern: one criterion, a first model trained and ticked with its inspector, then a
    second model with a new inspector while the first stays attached. They never train together: no notice."""
    import warnings

    crit = nn.MSELoss()
    first = None
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for _ in range(2):
            model = nn.Linear(1, 1)
            ins = PyTorchInspector([LossMetrics(loss_fn=crit)], visualizer="none", module=model)
            for _ in range(2):
                crit(model(torch.ones(4, 1)), torch.zeros(4, 1)).backward()
                if first is not None:  # the old model evaluated meanwhile (the tutorial plots its boundary)
                    first.eval()
                    with torch.no_grad():
                        first(torch.ones(4, 1))
                ins.tick_epoch()
            first = model
    assert not [c for c in caught if "loss_fn of LossMetrics" in str(c.message)]
