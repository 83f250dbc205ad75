"""Callbacks for training frameworks: one line shows the live widget while a framework runs the loop.

- ``monitorch_widget.integrations.lightning.InspectorCallback`` — a Lightning ``Callback``
  (extra ``lightning``).
- ``monitorch_widget.integrations.huggingface.InspectorCallback`` — a Hugging Face ``TrainerCallback``
  (extra ``huggingface``).

Each submodule imports its framework when it is itself imported; importing this package (or the core)
imports neither. What is recorded, and under which names, is documented in the README ("Training
frameworks") and in each callback's docstring.
"""

__all__: list[str] = []
