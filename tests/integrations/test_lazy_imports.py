"""The integrations are optional extras: the core never imports a training framework."""

from __future__ import annotations

import subprocess
import sys

FRAMEWORKS = ("lightning", "pytorch_lightning", "transformers", "accelerate")


def test_core_and_integrations_package_import_no_framework():
    code = ("import sys, monitorch_widget, monitorch_widget.integrations, monitorch_widget.integrations.common\n"
            "from monitorch_widget.lens import LossMetrics, OutputActivation, ParameterGradientActivation\n"
            f"print(sorted(m for m in {FRAMEWORKS!r} if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_each_callback_module_imports_only_its_framework():
    code = ("import sys, monitorch_widget.integrations.huggingface as hf\n"
            "print('lightning' in sys.modules, 'transformers' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "True"]
