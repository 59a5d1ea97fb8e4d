"""The project's PyTorch MiDaS v2.1 small is the official architecture, to the last number."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import openvino as ov
import pytest
import torch

from convert import export
from convert.midas_small import MidasSmall
from convert.synthetic import synthetic_model, synthetic_state_dict

MODELS = Path(__file__).parent / "fixtures" / "models"


def test_state_dict_matches_official_names_shapes_and_dtypes() -> None:
    official = json.loads((MODELS / "midas_v21_small_256.keys.json").read_text())
    ours = [[name, list(t.shape), str(t.dtype).removeprefix("torch.")] for name, t in MidasSmall().state_dict().items()]
    assert ours == official["state_dict"]
    assert sum(p.numel() for p in MidasSmall().parameters()) == official["parameters"] == 21_320_545


def test_synthetic_recipe_checksums() -> None:
    sd = synthetic_state_dict()
    total = sum(float(t.double().sum()) for t in sd.values())
    total_abs = sum(float(t.double().abs().sum()) for t in sd.values())
    assert total == pytest.approx(74077.6095, abs=1e-3)
    assert total_abs == pytest.approx(814907.0594, abs=1e-3)


def test_golden_output_in_pytorch() -> None:
    x = torch.from_numpy(np.load(MODELS / "golden_input_00065_192x256.npy"))
    ref = np.load(MODELS / "golden_output_00065_192x256.npy")
    with torch.no_grad():
        out = synthetic_model()(x).numpy()
    assert out.shape == ref.shape == (1, 192, 256)
    rel = np.abs(out - ref).max() / np.abs(ref).max()
    assert rel <= 1e-4, f"relative error {rel:.2e}"


@pytest.mark.slow
def test_golden_output_through_the_fp32_ir(tmp_path: Path) -> None:
    """The converted FP32 IR reproduces the golden output.

    The golden input is already normalised float (resized before quantising to u8), so it is fed to the
    IR as exported from PyTorch, BEFORE the u8 BGR preprocessing is added; that step is checked on its
    own against numpy preprocessing in tests/test_convert_cli.py (FP32 IR vs PyTorch on real images).
    """
    x = np.load(MODELS / "golden_input_00065_192x256.npy")
    ref = np.load(MODELS / "golden_output_00065_192x256.npy")
    xml = tmp_path / "golden_fp32.xml"
    export.save_ir(export.torch_to_ov(synthetic_model(), (256, 192)), xml, "fp32")
    core = ov.Core()
    compiled = core.compile_model(core.read_model(xml), "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    out = compiled(x)[0]
    assert out.shape == ref.shape == (1, 192, 256)
    rel = np.abs(out - ref).max() / np.abs(ref).max()
    assert rel <= 1e-4, f"relative error {rel:.2e}"
