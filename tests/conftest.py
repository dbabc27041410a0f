"""Shared fixtures: an offline environment, a tiny PLUME model, and real media files."""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw

# One intra-op thread: the tiny model gains nothing from more, and the demo tests run
# servers beside the test process on 2 cores (spinning threads slowed steps up to 8x).
torch.set_num_threads(1)


@pytest.fixture(scope="session")
def tiny_model():
    from plume_lite import PlumeModel

    torch.manual_seed(0)
    model = PlumeModel.from_backbone("tiny")
    return model.eval()


def _scene(i: int, size=(64, 64)) -> Image.Image:
    img = Image.new("RGB", size, (240, 240, 240))
    d = ImageDraw.Draw(img)
    d.ellipse([8 + 4 * i, 10, 30 + 4 * i, 32], fill=(200, 40 + 20 * i, 40))
    d.rectangle([36, 30, 56, 54], fill=(40, 60, 200))
    return img


@pytest.fixture(scope="session")
def media_files(tmp_path_factory):
    """A PNG, an 8-frame mp4 (PyAV), and a 2-page PDF, written for real."""
    import av

    root = tmp_path_factory.mktemp("media")
    png = root / "scene.png"
    _scene(0).save(png)
    mp4 = root / "clip.mp4"
    with av.open(str(mp4), "w") as container:
        stream = container.add_stream("mpeg4", rate=8)
        stream.width, stream.height, stream.pix_fmt = 64, 64, "yuv420p"
        for i in range(8):
            frame = av.VideoFrame.from_ndarray(np.asarray(_scene(i)), format="rgb24")
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    pdf = root / "doc.pdf"
    pages = [_scene(1, (64, 80)), _scene(5, (64, 80))]
    pages[0].save(pdf, "PDF", save_all=True, append_images=pages[1:], resolution=72)
    return {"image": str(png), "video": str(mp4), "pdf": str(pdf)}
