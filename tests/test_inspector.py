from collections import OrderedDict

import numpy as np
import pytest
import torch
from helpers import Emit
from torch import nn

from monitorch_widget import MonitorWarning, PyTorchInspector
from monitorch_widget.lens import LossMetrics, OutputActivation, OutputNorm, ParameterGradientActivation

OA = "Output Activations"


def small_model():
    return nn.Sequential(nn.Linear(2, 4), nn.ReLU(), nn.Linear(4, 2), nn.Softmax(dim=1))


def step(model, loss_fn, opt=None):
    x, y = torch.randn(8, 2), torch.randint(0, 2, (8,))
    loss = loss_fn(model(x), y)
    loss.backward()
    if opt:
        opt.step()


class RecordingVisualizer:
    """A user's monitorch-style visualizer: records every call."""

    def __init__(self):
        self.tags, self.calls = {}, []

    def register_tags(self, tag, attrs):
        self.tags[tag] = attrs

    def plot_numerical_values(self, epoch, tag, values, ranges=None):
        self.calls.append(("numerical", epoch, tag, values, ranges))

    def plot_probabilities(self, epoch, tag, values):
        self.calls.append(("probability", epoch, tag, values))

    def plot_relations(self, epoch, tag, values):
        self.calls.append(("relations", epoch, tag, values))


def test_user_visualizer_receives_monitorch_calls_with_fresh_dicts():
    loss_fn = nn.CrossEntropyLoss()
    vis = RecordingVisualizer()
    model = small_model()
    ins = PyTorchInspector([LossMetrics(loss_fn=loss_fn, metrics=["acc"], separate_loss_and_metrics=False),
                            OutputActivation(), ParameterGradientActivation()], visualizer=vis).attach(model)
    assert ins.visualizer is vis
    assert set(vis.tags) == {"Loss & Metrics", OA, "Warning Output Activations", "Weight Gradient Activation",
                             "Bias Gradient Activation", "Warning Gradient Activations"}
    step(model, loss_fn)
    ins.push_metric("acc", 0.75)
    ins.tick_epoch()
    step(model, loss_fn)
    ins.tick_epoch()
    first = [c for c in vis.calls if c[1] == 1]
    kinds = [(c[0], c[2]) for c in first]
    assert kinds[:2] == [("numerical", "Loss & Metrics"), ("numerical", "Loss & Metrics")]
    loss_values = first[0][3]["Loss & Metrics"]
    assert set(loss_values) == {"train_loss mean"}
    assert set(first[0][4]["Loss & Metrics"]) == {("train_loss -σ", "train_loss +σ")}
    assert first[1][3] == OrderedDict([("Loss & Metrics", {"acc mean": 0.75})])
    oa = next(c for c in first if c[2] == OA)[3]
    assert list(oa) == ["1", "3"] and set(oa["1"]) == {"activation_rate", "death_rate"}
    warn = next(c for c in first if c[2] == "Warning Output Activations")[3]
    assert set(warn["Warning Output Activations"]) == {"worst activation_rate", "worst death_rate"}
    # fresh dicts each call: mutating what we received changes nothing later
    second_oa = next(c for c in vis.calls if c[1] == 2 and c[2] == OA)[3]
    assert second_oa is not oa and second_oa["1"] is not oa["1"]


def test_reattach_starts_a_new_run_and_removes_old_hooks():
    loss_fn = nn.CrossEntropyLoss()
    lens = LossMetrics(loss_fn=loss_fn)
    ins = PyTorchInspector([lens, OutputActivation(), ParameterGradientActivation()], visualizer="none")
    a, b = small_model(), small_model()
    ins.attach(a)
    for _ in range(3):
        step(a, loss_fn)
        ins.tick_epoch()
    step(a, loss_fn)  # unfinished epoch of the old model: must not leak into the new run
    ins.attach(b)
    assert all(not m._forward_hooks for m in a.modules())
    assert all(not p._post_accumulate_grad_hooks for p in a.parameters())
    assert len(loss_fn._forward_hooks) == 1
    assert ins.state.counter == 1
    ins.tick_epoch()
    h = ins.history
    assert len(h.runs) == 2 and h.runs[1].epochs == [1.0]
    assert np.isnan(h.series("Loss", "Loss", "train_loss mean")[0])
    assert np.isnan(h.series(OA, "1", "activation_rate")[0])
    assert h.runs[0].n_rows == 3


def test_tick_before_attach_and_after_detach_are_clear_errors():
    ins = PyTorchInspector([OutputActivation()], visualizer="none")
    with pytest.raises(RuntimeError, match="attach"):
        ins.tick_epoch()
    ins.attach(small_model())
    ins.tick_epoch()
    ins.detach()
    ins.detach()  # idempotent
    with pytest.raises(RuntimeError, match="detached"):
        ins.tick_epoch()


def test_explicit_epoch_numbers_and_is_active_fn():
    ins = PyTorchInspector([OutputActivation()], visualizer="none", is_active_fn=2).attach(small_model())
    for _ in range(4):
        ins.tick_epoch()
    assert ins.history.runs[0].epochs == [2.0, 4.0]
    ins = PyTorchInspector([OutputActivation()], visualizer="none").attach(small_model())
    ins.tick_epoch(10)
    ins.tick_epoch()
    assert ins.history.runs[0].epochs == [10.0, 11.0]


def test_iter_and_range_tick_once_per_item():
    ins = PyTorchInspector([OutputActivation()], visualizer="none").attach(small_model())
    seen = list(ins.range(3))
    assert seen == [0, 1, 2] and ins.history.runs[0].epochs == [1.0, 2.0, 3.0]


@pytest.mark.parametrize("lenses, error, match", [
    ([OutputActivation], TypeError, "class OutputActivation, not an instance"),
    (["OutputActivation"], TypeError, "lenses\\[0\\] is a str"),
    (OutputActivation(), TypeError, "must be a list"),
])
def test_wrong_lens_types(lenses, error, match):
    with pytest.raises(error, match=match):
        PyTorchInspector(lenses, visualizer="none")


def test_same_lens_twice_and_unknown_visualizer_and_bad_include():
    lens = OutputActivation()
    with pytest.raises(ValueError, match="same OutputActivation object"):
        PyTorchInspector([lens, lens], visualizer="none")
    with pytest.raises(ValueError, match="'widget', 'print', 'none'"):
        PyTorchInspector([OutputActivation()], visualizer="matplot")
    with pytest.raises(TypeError, match="lacks register_tags.*plot_relations"):
        PyTorchInspector([OutputActivation()], visualizer=object())
    with pytest.raises(TypeError, match="include= entries must be torch.nn.Module subclasses"):
        OutputActivation(include=["Linear"])
    with pytest.raises(ValueError, match="unknown aggregation 'avg'"):
        OutputActivation(activation_aggregation="avg")


def test_hook_failure_is_reported_once_and_training_goes_on():
    model = nn.Sequential(nn.Linear(2, 3), nn.ReLU(), nn.Linear(3, 2), nn.ReLU())
    lens = OutputActivation()
    ins = PyTorchInspector([lens], visualizer="none").attach(model)
    broken = lens.sites[0]

    class Boom(RuntimeError):
        pass

    def explode(*a, **k):
        raise Boom("simulated")

    broken.buf = None
    broken.ndim = -2  # force the slow path, then make it fail
    broken._reshape = explode
    with pytest.warns(MonitorWarning, match="hook failed with Boom"):
        for _ in range(5):
            model(torch.randn(4, 2)).sum().backward()
    ins.tick_epoch()
    h = ins.history
    assert np.isnan(h.series(OA, "1", "activation_rate")[0])
    assert not np.isnan(h.series(OA, "3", "activation_rate")[0])
    assert [p["count"] for p in h.runs[0].problem_list()] == [1]


def test_tuple_output_and_integer_output_are_reported_not_fatal():
    class TupleOut(nn.ReLU):
        def forward(self, x):
            return (x, x)

    class IntOut(nn.ReLU):
        def forward(self, x):
            return (x > 0).long()

    model = nn.Sequential(TupleOut())
    ins = PyTorchInspector([OutputActivation()], visualizer="none").attach(model)
    with pytest.warns(MonitorWarning, match="output is a tuple"):
        model(torch.randn(3, 2))
    ins.tick_epoch()
    model = nn.Sequential(IntOut())
    ins = PyTorchInspector([OutputActivation()], visualizer="none").attach(model)
    with pytest.warns(MonitorWarning, match="dtype torch.int64"):
        model(torch.randn(3, 2))


def test_data_parallel_unwrapped():
    model = small_model()
    ins = PyTorchInspector([OutputActivation()], visualizer="none").attach(nn.DataParallel(model))
    assert [s.name for s in ins.lenses[0].sites] == ["1", "3"]


def test_depth_and_name_prefix():
    model = nn.Sequential(nn.Sequential(nn.Linear(2, 2), nn.ReLU()), nn.ReLU())
    ins = PyTorchInspector([OutputActivation(include=[nn.Sequential])], visualizer="none", depth=1,
                           module_name_prefix="/").attach(model)
    assert [s.name for s in ins.lenses[0].sites] == ["0", "1"]
    ins = PyTorchInspector([OutputActivation()], visualizer="none", module_name_prefix="/").attach(model)
    assert [s.name for s in ins.lenses[0].sites] == ["0/1", "1"]


def test_stopped_modules_lose_their_hooks_and_resume():
    model = nn.Sequential(Emit([torch.ones(2, 2)]), nn.ReLU(), nn.Dropout(0.0))
    ins = PyTorchInspector([OutputActivation()], visualizer="none").attach(model)
    ins.stop_recording("Dropout")
    assert not model[2]._forward_hooks and model[1]._forward_hooks  # stopped: its hook is gone
    model(torch.zeros(1))
    ins.tick_epoch()
    assert ins.history.runs[0].groups(OA) == ["1"]
    ins.resume_recording("Dropout")
    ins.tick_epoch()  # resumes take effect at a tick: epoch 2 stays a gap
    assert model[2]._forward_hooks
    model(torch.zeros(1))
    ins.tick_epoch()
    assert ins.history.series(OA, "2", "activation_rate").tolist()[2] == 1.0


def test_update_every_writes_provisional_rows_and_the_final_row_is_unchanged():
    def train(update_every):
        torch.manual_seed(0)
        model = small_model()
        loss_fn = nn.CrossEntropyLoss()
        ins = PyTorchInspector([LossMetrics(loss_fn=loss_fn), OutputActivation(), ParameterGradientActivation()],
                               visualizer="none", update_every=update_every).attach(model)
        rows = []
        ins.history.subscribe(lambda e: rows.append(e[2]["provisional"]) if e[0] == "row" else None)
        opt = torch.optim.SGD(model.parameters(), lr=0.1)
        for _ in range(2):
            for _ in range(10):
                opt.zero_grad()
                step(model, loss_fn, opt)
            ins.tick_epoch()
        return ins.history.runs[0].data.copy(), rows

    plain, rows_plain = train(None)
    live, rows_live = train(3)
    np.testing.assert_allclose(live, plain)
    assert True in rows_live and True not in rows_plain


def test_seed_mlp_redundant_layer_has_higher_death_rate():
    """The seed's first experiment: the redundant second hidden layer dies more than the first."""
    from collections import OrderedDict as OD

    from torch.utils.data import DataLoader, TensorDataset

    rng_seed = 42
    np.random.seed(rng_seed)
    torch.manual_seed(rng_seed)
    pos = np.random.standard_normal(size=(40, 2)) * 0.5 - 1
    neg = np.random.standard_normal(size=(40, 2)) * 0.5 + 1
    X = torch.tensor(np.vstack((pos, neg)), dtype=torch.float32)
    y = torch.tensor(np.hstack((np.ones(40), np.zeros(40))), dtype=torch.long)
    full = TensorDataset(X, y)
    train_ds, val_ds = torch.utils.data.random_split(full, [56, 24], generator=torch.Generator().manual_seed(rng_seed))
    train_loader = DataLoader(train_ds, batch_size=8, shuffle=True)
    val_loader = DataLoader(val_ds, batch_size=8)
    loss_fn = nn.CrossEntropyLoss()
    ins = PyTorchInspector([LossMetrics(loss_fn=loss_fn, separate_loss_and_metrics=False, metrics=["val_accuracy"]),
                            OutputActivation(), ParameterGradientActivation()], visualizer="none")
    model = nn.Sequential(OD([("lin1", nn.Linear(2, 16)), ("relu1", nn.ReLU()), ("lin2", nn.Linear(16, 16)),
                              ("relu2", nn.ReLU()), ("lin3", nn.Linear(16, 2)), ("softmax", nn.Softmax(dim=1))]))
    ins.attach(model)
    opt = torch.optim.Adam(model.parameters())
    for _ in range(50):
        for data, label in train_loader:
            opt.zero_grad()
            loss_fn(model(data), label).backward()
            opt.step()
        correct = 0
        with torch.no_grad():
            for data, label in val_loader:
                pred = model(data)
                loss_fn(pred, label)
                correct += pred.argmax(1).eq(label).sum().item()
        ins.push_metric("val_accuracy", correct / 24)
        ins.tick_epoch()
    h = ins.history
    d1 = np.nanmean(h.series(OA, "relu1", "death_rate")[-10:])
    d2 = np.nanmean(h.series(OA, "relu2", "death_rate")[-10:])
    g1 = np.nanmean(h.series("Weight Gradient Activation", "lin1", "death_rate")[-10:])
    g2 = np.nanmean(h.series("Weight Gradient Activation", "lin2", "death_rate")[-10:])
    assert d2 > d1 and d2 > 0.3
    assert g2 > g1
    assert h.series("Loss & Metrics", "Loss & Metrics", "val_accuracy mean")[-1] >= 0.9


def test_output_norm_per_sample_l2_mean():
    b = torch.tensor([[3.0, 4.0], [0.0, 1.0]])
    model = nn.Sequential(Emit([b]), nn.ReLU())
    ins = PyTorchInspector([OutputNorm()], visualizer="none").attach(model)
    model(torch.zeros(1))
    ins.tick_epoch()
    assert ins.history.series("Output Norm", "1", "mean")[0] == pytest.approx(3.0)
    assert "Mean Output Norm Comparison" in ins.history.panels()


def test_attach_run_name_labels_the_run_and_survives_a_saved_history(tmp_path):
    from monitorch_widget.record.history_file import load

    loss_fn = nn.CrossEntropyLoss()
    insp = PyTorchInspector([LossMetrics(loss_fn=loss_fn)], visualizer="none")
    for name in ("baseline", "wider"):
        model = small_model()
        insp.attach(model, run_name=name)
        step(model, loss_fn)
        insp.tick_epoch()
    insp.attach(small_model())  # no name: the default label
    assert [r.label for r in insp.history.runs] == ["baseline", "wider", "run 3: Sequential"]
    path = tmp_path / "h.json"
    insp.history.save(path)
    assert [r.label for r in load(path).runs] == ["baseline", "wider", "run 3: Sequential"]
    with pytest.raises(TypeError, match="run_name"):
        insp.attach(small_model(), run_name=3)


def test_rows_carry_the_runs_optimizer_step_count_through_the_wire_and_saved_histories(tmp_path):
    import json

    from monitorch_widget.record.history_file import load
    from monitorch_widget.record.protocol import snapshot

    loss_fn = nn.CrossEntropyLoss()
    insp = PyTorchInspector([LossMetrics(loss_fn=loss_fn)], visualizer="none")
    for run, batches in enumerate((4, 3)):
        model = small_model()
        opt = torch.optim.SGD(model.parameters(), lr=0.1)
        insp.attach(model)
        for _epoch in range(3):
            for _ in range(batches):
                opt.zero_grad()
                step(model, loss_fn, opt)
            insp.tick_epoch()
        # counted per run, by hand: `batches` optimizer steps per epoch
        assert insp.history.runs[run].steps == [batches * 1.0, batches * 2.0, batches * 3.0]
    insp.detach()
    snap = snapshot(insp.history)
    assert np.frombuffer(snap["runs"][1]["steps"], dtype="<f8").tolist() == [3.0, 6.0, 9.0]
    path = tmp_path / "h.json"
    insp.history.save(path)
    assert load(path).runs[0].steps == [4.0, 8.0, 12.0]
    doc = json.loads(path.read_text())
    for r in doc["runs"]:
        del r["steps"]  # a history saved before the step count
    path.write_text(json.dumps(doc))
    assert all(np.isnan(load(path).runs[0].steps))


def test_step_axis_counts_only_the_attached_models_optimizer_steps():
    # Two models trained side by side in one process (run comparison): each inspector's "step" x axis
    # counts the optimizer steps that update its own model, not the other model's.
    torch.manual_seed(0)
    models = [nn.Sequential(nn.Linear(2, 4), nn.ReLU(), nn.Linear(4, 2)) for _ in range(2)]
    opts = [torch.optim.SGD(m.parameters(), lr=0.1) for m in models]
    inspectors = [PyTorchInspector([ParameterGradientActivation()], visualizer="none", module=m) for m in models]
    x, y = torch.randn(8, 2), torch.randint(0, 2, (8,))
    steps_per_epoch = (3, 5)
    for _ in range(2):
        for k in range(max(steps_per_epoch)):
            for model, opt, n in zip(models, opts, steps_per_epoch):
                if k < n:
                    opt.zero_grad()
                    nn.functional.cross_entropy(model(x), y).backward()
                    opt.step()
        for ins in inspectors:
            ins.tick_epoch()
    assert inspectors[0].history.current.steps == [3.0, 6.0]
    assert inspectors[1].history.current.steps == [5.0, 10.0]
    # an optimizer created after attach (a new one per epoch, a scheduler restart) is recognised too
    opt2 = torch.optim.Adam(models[0].parameters())
    opt2.zero_grad()
    nn.functional.cross_entropy(models[0](x), y).backward()
    opt2.step()
    inspectors[0].tick_epoch()
    assert inspectors[0].history.current.steps == [3.0, 6.0, 7.0]


def test_two_lenses_writing_the_same_panel_are_refused_and_split_parameter_lenses_are_not():
    """Trial r8: ``OutputActivation()`` and ``OutputActivation(activation_aggregation='max')`` in one inspector wrote the
    same panel: the max lens's 0.5234 replaced the mean lens's 0.5053, silently. Lenses watching other parameters
    (weights in one, biases in the other) share only the warning panel, as in monitorch."""
    from monitorch_widget.lens import LossMetrics, ParameterGradientActivation

    with pytest.raises(ValueError, match=r"lenses\[1\] \(OutputActivation\) and lenses\[0\] \(OutputActivation\) both "
                                         r"write the panel 'Output Activations'"):
        PyTorchInspector([OutputActivation(), OutputActivation(activation_aggregation="max")], visualizer="none")
    with pytest.raises(ValueError, match="both write the panel 'Loss'"):
        PyTorchInspector([LossMetrics(), LossMetrics(metrics=["acc"])], visualizer="none")
    ins = PyTorchInspector([ParameterGradientActivation(parameters=["weight"]),
                            ParameterGradientActivation(parameters=["bias"])], visualizer="none")
    assert len(ins.lenses) == 2


def test_a_mistyped_series_name_is_answered_with_the_panels_own_names():
    model = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 1))
    loss_fn = nn.MSELoss()
    ins = PyTorchInspector([LossMetrics(loss_fn=loss_fn), OutputActivation()], visualizer="none", module=model)
    loss_fn(model(torch.randn(8, 3)), torch.zeros(8, 1)).backward()
    ins.tick_epoch()
    h = ins.history
    with pytest.raises(KeyError, match=r"panel 'Loss' has groups \['Loss'\]; group 'Loss' has keys \['train_loss mean'\]"):
        h.series("Loss", "loss", "train_loss mean")  # the group is 'Loss'
    with pytest.raises(KeyError, match=r"panel 'Output Activations' has groups \['1'\]; group '1' has keys "
                       r"\['activation_rate', 'death_rate'\]"):
        h.series("Output Activation", "1", "rate")
    with pytest.raises(KeyError, match=r"its panels: \['Loss', 'Output Activations', 'Warning Output Activations'\]"):
        h.series("Gradients", "1", "rate")
    with pytest.raises(TypeError, match=r"a band's edge is role='hi'"):
        h.series("Loss", "Loss", "train_loss +σ", "hi")  # run is the 4th argument
    assert h.series("Loss", "Loss", "train_loss +σ", role="hi")[0] >= h.series("Loss", "Loss", "train_loss mean")[0]


def _steps(model, loss_fn, n, seed):
    g = torch.Generator().manual_seed(seed)
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    for _ in range(n):
        opt.zero_grad()
        loss_fn(model(torch.randn(4, 3, generator=g)), torch.zeros(4, 1)).backward()
        opt.step()


def test_an_update_every_estimate_of_an_epoch_that_never_ends_leaves_no_row(tmp_path):
    """Trial r14a: with update_every, detach() in the middle of an epoch left an all-NaN final row (epochs
    [1, 2, 3], loss [a, b, nan]; saved as such), and an LR finder's detach(); attach() kept the finder as a run of
    its own with one all-NaN epoch, where without update_every the next run takes its place."""
    loss_fn = nn.MSELoss()
    model = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 1))
    ins = PyTorchInspector([LossMetrics(loss_fn=loss_fn), OutputActivation()], visualizer="none", update_every=5)
    ins.attach(model, run_name="lr finder")
    _steps(model, loss_fn, 12, 0)
    assert ins.history.runs[-1].provisional  # the case: an estimate of the running epoch exists
    ins.detach()
    ins.attach(model, run_name="real run")
    for e in range(2):
        _steps(model, loss_fn, 12, e + 1)
        ins.tick_epoch()
    _steps(model, loss_fn, 7, 9)  # half an epoch, then the run stops
    ins.detach()
    runs = ins.history.runs
    assert [r.label for r in runs] == ["real run"] and runs[0].epochs == [1.0, 2.0]
    assert not np.isnan(ins.history.series("Loss", "Loss", "train_loss mean")).any()
    ins.save(tmp_path / "h.json")
    from monitorch_widget import load

    assert load(tmp_path / "h.json").runs[0].epochs == [1.0, 2.0]


def test_tick_epoch_numbers_going_back_in_one_run_are_said_once():
    """Trial r15b: re-running a loop of tick_epoch(epoch=e) wrote rows [0, 1, 2, 0, 1, 2] in one run, without a
    word; the charts turned back along the epoch axis (and a finding read 'since epoch 3, resolved at epoch 1')."""
    import warnings as w

    from monitorch_widget import MonitorNotice

    ins = PyTorchInspector([LossMetrics()], visualizer="none", module=nn.Linear(1, 1))
    with w.catch_warnings(record=True) as caught:
        w.simplefilter("always")
        for _ in range(2):  # the cell run twice
            for e in range(3):
                ins.push_loss(float(e), train=True)
                ins.tick_epoch(epoch=e)
        ins.tick_epoch(epoch=7)  # forward again: nothing more to say
    said = [str(c.message) for c in caught if issubclass(c.category, MonitorNotice)]
    assert len(said) == 1 and "tick_epoch(epoch=0) after epoch 2 of the same run" in said[0], said
    assert list(ins.history.runs[-1].epochs) == [0, 1, 2, 0, 1, 2, 7]  # written as asked (monitorch's rows)
    with w.catch_warnings(record=True) as caught:
        w.simplefilter("always")
        ins.detach()
        ins.attach(nn.Linear(1, 1))
        for e in (3, 5, 9):
            ins.tick_epoch(epoch=e)
    assert not [c for c in caught if issubclass(c.category, MonitorNotice)]
