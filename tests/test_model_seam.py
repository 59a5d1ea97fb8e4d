"""The model seam: a depth model that is not MiDaS runs in the daemon with nothing but its ``ModelSpec``.

The model is built here with torch: a stride-14 patch convolution and a x14 upsampling, so its input must be
a multiple of 14, as ViT-based depth models (DPT, Depth Anything) need; trained at 518 on the longer side.
It goes through ``edge-depth convert --onnx ... --model-spec ...`` and then through the daemon's own
``DepthEngine`` and ``Resizer``, which take every preprocessing fact from the IR.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import openvino as ov
import pytest

from edge_depth.model.contract import (
    MIDAS_V21_SMALL,
    ModelSpec,
    SpecError,
    read_spec,
    spec_as_dict,
    spec_from_mapping,
    write_spec,
)

REPO = Path(__file__).parent.parent
CLIP = Path(__file__).parent / "fixtures" / "video" / "solidWhiteRight.mp4"
SPEC_YAML = """\
name: patch14_depth
stem: patch14
long_side: 518
multiple: 14
mean: [0.5, 0.5, 0.5]
std: [0.5, 0.5, 0.5]
resize_filter: bicubic
"""
PATCH14 = ModelSpec(
    name="patch14_depth", stem="patch14", long_side=518, multiple=14, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5)
)


def _tiny_ov_model() -> ov.Model:
    """A one-op OpenVINO model without any edge-depth rt_info, as an IR of an older conversion reads."""
    param = ov.opset13.parameter([1, 8, 8, 3], ov.Type.u8, name="image")
    return ov.Model([ov.opset13.convert(param, ov.Type.f32).output(0)], [param], "tiny")


def test_an_ir_without_a_spec_reads_back_as_midas() -> None:
    assert read_spec(_tiny_ov_model()) == MIDAS_V21_SMALL


def test_the_spec_round_trips_through_rt_info_and_json() -> None:
    model = _tiny_ov_model()
    write_spec(model, PATCH14)
    assert read_spec(model) == PATCH14
    assert spec_from_mapping(json.loads(json.dumps(spec_as_dict(PATCH14)))) == PATCH14
    model.set_rt_info("0", ["edge_depth", "multiple"])
    with pytest.raises(SpecError, match=r"^edge_depth/multiple: 0 is not a whole number > 0$"):
        read_spec(model)


def test_the_daemons_model_package_imports_neither_convert_nor_torch() -> None:
    script = (
        "import sys\n"
        "import edge_depth.model.contract\n"
        "assert 'openvino' not in sys.modules, 'the contract imports OpenVINO'\n"
        "import edge_depth.model.engine, edge_depth.model.preprocess\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('convert', 'torch', 'nncf'))\n"
        "assert not bad, bad\n"
    )
    done = subprocess.run([sys.executable, "-c", script], check=False, cwd=REPO, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]


def _patch14_onnx(path: Path) -> None:
    """(1, 3, H, W) float -> (1, 1, H, W) float, H and W multiples of 14; fixed random weights."""
    import torch  # noqa: PLC0415 -- only this test builds a model
    from torch import nn  # noqa: PLC0415

    class Patch14(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.patch = nn.Conv2d(3, 8, kernel_size=14, stride=14)
            self.head = nn.Conv2d(8, 1, kernel_size=1)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            y = self.head(torch.relu(self.patch(x)))
            return torch.relu(nn.functional.interpolate(y, scale_factor=14.0, mode="bilinear"))

    torch.manual_seed(14)
    net = Patch14().eval()
    torch.onnx.export(net, (torch.zeros(1, 3, 42, 56),), str(path), dynamo=False, opset_version=17)


def test_a_multiple_of_14_model_runs_in_the_daemon_with_its_spec(tmp_path: Path) -> None:
    onnx_path = tmp_path / "patch14.onnx"
    _patch14_onnx(onnx_path)
    spec_path = tmp_path / "spec.yaml"
    spec_path.write_text(SPEC_YAML)
    out = tmp_path / "models"
    argv = ["convert", "--onnx", str(onnx_path), "--model-spec", str(spec_path), "--out", str(out)]
    argv += ["--precision", "fp32", "--bench-seconds", "0"]
    edge_depth = Path(sys.executable).with_name("edge-depth")
    done = subprocess.run([str(edge_depth), *argv], check=False, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]

    # the IR: named by the spec's stem, saved at long_side x long_side, carrying the spec
    xml = out / "patch14_fp32.xml"
    model = ov.Core().read_model(xml)
    assert list(model.input().get_shape()) == [1, 518, 518, 3]
    assert list(model.output().get_shape()) == [1, 518, 518]
    assert read_spec(model) == PATCH14
    entry = json.loads((out / "manifest.json").read_text())["precisions"]["fp32"]
    assert entry["model"] == "patch14_depth" and entry["spec"] == spec_as_dict(PATCH14)

    # the daemon's code, unchanged: engine and resizer take every fact from the IR
    from edge_depth.model.engine import DepthEngine, ModelError  # noqa: PLC0415
    from edge_depth.model.preprocess import Resizer  # noqa: PLC0415

    engine = DepthEngine(xml, hint="LATENCY", inference_precision="f32")
    assert engine.info.spec == PATCH14 and engine.info.name == "patch14_depth"
    capture = cv2.VideoCapture(str(CLIP))
    ok, frame = capture.read()
    capture.release()
    assert ok and frame.shape == (540, 960, 3)
    # 960x540 -> longer side 518; 540 * 518 / 960 = 291.4 = 20.8 x 14 -> 21 x 14 = 294
    image = Resizer(engine.info.spec)(frame)
    assert image.shape == (294, 518, 3)
    assert (image == cv2.resize(frame, (518, 294), interpolation=cv2.INTER_CUBIC)).all()
    depth = engine.infer(image)
    assert depth.shape == (294, 518) and depth.dtype == np.float32
    assert np.isfinite(depth).all() and depth.std() > 0

    # the normalisation inside the IR is the spec's: (x / 255 - 0.5) / 0.5 on RGB, checked against ONNX
    rgb = image[:, :, ::-1].astype(np.float32) / 255.0
    reference_input = np.ascontiguousarray(((rgb - 0.5) / 0.5).transpose(2, 0, 1)[None])
    onnx_model = ov.Core().read_model(onnx_path)
    onnx_model.reshape([1, 3, 294, 518])
    compiled = ov.Core().compile_model(onnx_model, "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    expected = np.asarray(compiled(reference_input)[0])[0, 0]
    assert np.abs(depth - expected).max() <= 1e-4 * np.abs(expected).max()

    # a fixed model.input_size is checked against the model's multiple, not MiDaS's 32
    assert DepthEngine(xml, input_size=(518, 294)).info.spec.multiple == 14
    with pytest.raises(ModelError, match=r"^model.input_size: 256x192 does not fit patch14_fp32.xml") as raised:
        DepthEngine(xml, input_size=(256, 192))
    assert "multiples of 14" in str(raised.value) and "\n" not in str(raised.value)
