"""Session fixtures: the synthetic MiDaS weights as a .pt file, and IRs converted from them by the real CLI.

The IRs are what ``edge-depth convert`` writes (u8 BGR NHWC ``image`` in, ``depth`` out, manifest.json),
built once per test session because an INT8 conversion takes tens of seconds on two cores.
Synthetic weights are untrained: their outputs exercise the pipeline but are not depth.
"""

from __future__ import annotations

from pathlib import Path

import pytest

# Few calibration frames keep the session's INT8 conversion short; accuracy tests state what this gives.
TEST_CALIB_SIZE = 24
PRECISIONS = ("fp32", "fp16", "int8")


@pytest.fixture(scope="session")
def synthetic_pt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The golden-recipe weights saved as a bare state dict (``torch.save(state_dict)``)."""
    # torch only for the tests that ask for it: most test sessions never need it
    import torch  # noqa: PLC0415

    from convert.synthetic import synthetic_state_dict  # noqa: PLC0415 -- imports torch

    path = tmp_path_factory.mktemp("weights") / "synthetic_midas_small.pt"
    torch.save(synthetic_state_dict(), path)
    return path


@pytest.fixture(scope="session")
def synthetic_ir_dir(tmp_path_factory: pytest.TempPathFactory, synthetic_pt: Path) -> Path:
    """A directory with midas_small_{fp32,fp16,int8}.xml/.bin and manifest.json, made by ``convert.cli.main``."""
    from convert.cli import main  # noqa: PLC0415 -- imports OpenVINO; only sessions using IRs pay for it

    out = tmp_path_factory.mktemp("models")
    argv = ["--weights", str(synthetic_pt), "--out", str(out), "--precision", ",".join(PRECISIONS)]
    argv += ["--calib-size", str(TEST_CALIB_SIZE), "--bench-seconds", "0.5"]
    assert main(argv) == 0, "converting the synthetic weights failed (see the captured output)"
    return out
