"""Proves the browser harness itself with a tiny self-made anywidget (no monitorch_widget code involved):
the kernel is this test process' interpreter, and kernel->front-end trait updates are drawn while the
cell that makes them is still executing (``[*]``)."""

from __future__ import annotations

import sys
import time

import pytest

pytestmark = pytest.mark.browser

TICKER_CELLS = [
    """
    import sys
    print("EXE=" + sys.executable)
    print("PREFIX=" + sys.prefix)
    """,
    """
    import time
    import anywidget, traitlets

    class Ticker(anywidget.AnyWidget):
        _esm = '''
        function render({ model, el }) {
          const span = document.createElement("span");
          span.className = "harness-ticker";
          const draw = () => {
            span.textContent = "tick " + model.get("n");
            span.dataset.n = String(model.get("n"));
          };
          draw();
          model.on("change:n", draw);
          el.appendChild(span);
        }
        export default { render };
        '''
        n = traitlets.Int(0).tag(sync=True)

    ticker = Ticker()
    display(ticker)
    """,
    """
    for i in range(1, 31):
        ticker.n = i
        time.sleep(0.25)
    print("loop done")
    """,
    """
    raise ValueError("harness-boom")
    """,
]


@pytest.mark.parametrize("jupyter_server", ["lab", "notebook"], indirect=True)
def test_live_widget_updates_while_cell_runs(jupyter_server, open_notebook):
    nb = open_notebook(jupyter_server, TICKER_CELLS)
    page = nb.page
    nb.run_all()
    nb.wait_running(cell=2, timeout=60)
    page.wait_for_selector(".harness-ticker", state="attached", timeout=30_000)

    # Sample the drawn counter while the loop cell is still [*].
    samples: list[int] = []
    deadline = time.monotonic() + 12
    while time.monotonic() < deadline:
        running = nb.running_cell_index()
        n = int(page.get_attribute(".harness-ticker", "data-n") or 0)
        if running != 2:
            break
        samples.append(n)
        if len(set(samples)) >= 4:
            break
        page.wait_for_timeout(300)
    distinct = sorted(set(samples))
    assert len(distinct) >= 3, f"counter not seen rising while [*]: {samples}"
    assert samples == sorted(samples), f"counter went backwards: {samples}"
    assert distinct[-1] < 30, "all samples were taken after the loop ended"

    nb.wait_idle(timeout=60)
    assert page.get_attribute(".harness-ticker", "data-n") == "30"
    out = nb.output_texts()
    assert f"EXE={sys.executable}" in out[0]
    assert f"PREFIX={sys.prefix}" in out[0]
    assert "loop done" in out[2]
    errors = nb.error_outputs()
    assert len(errors) == 1 and errors[0].startswith("ValueError: harness-boom"), errors
