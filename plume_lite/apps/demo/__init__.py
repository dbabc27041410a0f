"""The plume_lite Gradio demo: search a corpus by image, video or PDF page and watch the
per-step expert routing. `app.py` beside this folder starts it; `build_app` is the entry
point for Python and tests.

Importing this package turns off every outbound lookup *before* gradio is imported:
gradio checks its version and sends analytics at launch, the hub client sends telemetry.
"""
import os

OFFLINE_ENV = {"GRADIO_ANALYTICS_ENABLED": "False", "HF_HUB_OFFLINE": "1",
               "HF_HUB_DISABLE_TELEMETRY": "1"}
os.environ.update(OFFLINE_ENV)   # forced: the demo promises no outbound request
for _key, _value in (("HF_DATASETS_OFFLINE", "1"), ("TRANSFORMERS_OFFLINE", "1"),
                     ("TOKENIZERS_PARALLELISM", "false")):
    os.environ.setdefault(_key, _value)
