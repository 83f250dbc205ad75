"""Stopping a module's measurement from the widget while training runs, in a real JupyterLab.

Where the view's message reaches the kernel during the cell (JupyterLab >= 4.4 over a kernel subshell, ipykernel
7.1-7.3) the kernel queues it and applies it on the training thread at its next monitor call; ipykernel 7.4 routes
it to the busy main shell, so it is applied when the kernel is next free. Either way the hooks go off, the other
layers stay measured and the "not recorded" span comes back to the view."""

from __future__ import annotations

import time

import pytest

pytestmark = pytest.mark.browser

SETUP_CELL = """
import json, time
import torch, torch.nn as nn
from monitorch_widget import PyTorchInspector
from monitorch_widget.lens import LossMetrics, OutputActivation

torch.manual_seed(0)
model = nn.Sequential(nn.Linear(4, 16), nn.ReLU(), nn.Linear(16, 16), nn.ReLU(), nn.Linear(16, 2))
loss_fn = nn.CrossEntropyLoss()
X, Y = torch.randn(128, 4), torch.randint(0, 2, (128,))
inspector = PyTorchInspector([LossMetrics(loss_fn=loss_fn), OutputActivation()], visualizer="widget")
inspector.attach(model)
display(inspector.widget)
"""

TRAIN_CELL = """
for epoch in range(30):
    for i in range(0, 128, 32):
        loss_fn(model(X[i:i + 32]), Y[i:i + 32]).backward()
    inspector.tick_epoch()
    time.sleep(0.3)
"""



TOGGLE = '.mw-root .mw-panel[data-panel="Output Activations"][data-group="1"] .mw-rec'
STOPPED = TOGGLE + '[data-stopped="true"]'


@pytest.mark.parametrize("jupyter_server", ["lab"], indirect=True)
def test_stop_recording_from_the_widget_mid_training(jupyter_server, open_notebook):
    nb = open_notebook(jupyter_server, [SETUP_CELL, TRAIN_CELL])
    page = nb.page
    nb.run_all()
    nb.wait_running(cell=1, timeout=90)
    toggle = page.locator(TOGGLE).first
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        epochs = page.locator('.mw-root .mw-panel[data-group="1"]').first.get_attribute("data-epochs")
        if epochs and int(epochs) >= 3:
            break
        page.wait_for_timeout(200)
    assert nb.running_cell_index() == 1
    toggle.click()
    clicked_at = int(page.locator('.mw-root .mw-panel[data-group="1"]').first.get_attribute("data-epochs") or 0)
    assert toggle.get_attribute("data-pending") == "true"
    nb.wait_idle(timeout=120)
    nb.assert_no_errors()
    # the view learns the kernel's decision only from the record's "not recorded" span (the output may have been
    # re-rendered at the end of the cell, so the button's pending mark is not what is checked)
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and page.locator(STOPPED).count() == 0:
        page.wait_for_timeout(100)
    assert page.locator(STOPPED).count() >= 1, page.locator(TOGGLE).first.evaluate("e => ({...e.dataset})")
    # layer 3 kept being measured; layer 1 has every epoch recorded before the stop
    for g in ("1", "3"):
        assert page.locator(f'.mw-root .mw-panel[data-group="{g}"]').first.get_attribute("data-epochs") == "30"
    assert clicked_at >= 3
