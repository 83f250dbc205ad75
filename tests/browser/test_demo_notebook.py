"""The seed experiments notebook, run for real in JupyterLab: both widgets live, the CNN one overlays two
runs; writes the screenshot used in the README (artifacts/screenshots/widget-cnn.png)."""

from pathlib import Path

import pytest

NOTEBOOK = Path(__file__).resolve().parents[2] / "notebooks" / "activations.ipynb"


@pytest.mark.browser
def test_activations_notebook_runs_and_shows_both_cnn_runs(jupyter_lab, open_notebook):
    nb = open_notebook(jupyter_lab, NOTEBOOK, name="activations.ipynb")
    nb.wait_kernel_ready()
    nb.run_all_and_wait(timeout=900)
    nb.assert_no_errors()
    roots = nb.page.locator(".mw-root")
    assert roots.count() == 2  # the MLP experiment's widget and the CNN experiments' widget
    cnn = roots.nth(1)
    # two runs in one widget: the earlier one is listed as a toggleable faint overlay
    assert cnn.locator("input[data-filter-run]").count() >= 1
    for tag in ("Output Activations", "Weight Gradient Activation", "Warning Output Activations"):
        assert cnn.locator(f'.mw-panel[data-panel="{tag}"]').count() >= 1
    assert int(cnn.locator('.mw-panel[data-panel="Output Activations"]').first.get_attribute("data-epochs")) > 1
    nb.page.evaluate("document.querySelectorAll('.mw-root')[1].setAttribute('data-shot', 'cnn')")
    shot = nb.screenshot("widget-cnn.png", '.mw-root[data-shot="cnn"]')
    assert shot.stat().st_size > 10_000
