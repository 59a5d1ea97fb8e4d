"""Bad input to the conversion command: one ``error:`` line naming the culprit, exit code 2, no traceback."""

from __future__ import annotations

import argparse
import functools
import hashlib
import http.server
import logging
import shutil
import socket
import threading
import time
from collections import OrderedDict
from collections.abc import Iterator
from pathlib import Path

import cv2
import pytest
import torch

from convert import ConvertError, calibration, weights
from convert.cli import main
from convert.export import torch_to_ov
from convert.midas_small import MidasSmall
from convert.synthetic import synthetic_state_dict
from edge_depth.model.contract import MIDAS_V21_SMALL
from edge_depth.model.preprocess import Resizer

FIXTURES = Path(__file__).parent / "fixtures"


def run_cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    code = main(list(argv))
    err = capsys.readouterr().err.strip()
    return code, err


def assert_one_error_line(err: str, *parts: str) -> None:
    assert err.startswith("error: "), err
    assert "\n" not in err and "Traceback" not in err, err
    for part in parts:
        assert part in err, f"{part!r} not in {err!r}"


@pytest.fixture(scope="module")
def state_dict() -> OrderedDict[str, torch.Tensor]:
    return synthetic_state_dict()


@pytest.fixture
def closed_port() -> int:
    """A loopback port with nothing listening: connecting fails at once, as without network."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


@pytest.fixture
def no_proxy_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY", "all_proxy", "ALL_PROXY", "no_proxy"):
        monkeypatch.delenv(name, raising=False)


def test_jpeg_given_as_weights(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    fake = tmp_path / "weights.pt"
    shutil.copy(FIXTURES / "photos" / "indoor" / "kazuhito00_sample.jpg", fake)
    code, err = run_cli(capsys, "--weights", str(fake), "--out", str(tmp_path / "out"))
    assert code == 2
    assert_one_error_line(err, str(fake), "not a PyTorch checkpoint (wrong kind of file")
    assert not (tmp_path / "out" / "manifest.json").exists()


def test_text_file_given_as_weights(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    fake = tmp_path / "midas.pt"
    fake.write_text("<html>404 Not Found</html>\n")
    code, err = run_cli(capsys, "--weights", str(fake), "--out", str(tmp_path / "out"))
    assert code == 2
    assert_one_error_line(err, str(fake), "not a PyTorch checkpoint (wrong kind of file")
    fake.write_bytes(b"")
    code, err = run_cli(capsys, "--weights", str(fake), "--out", str(tmp_path / "out"))
    assert code == 2
    assert_one_error_line(err, str(fake), "empty file")


def test_truncated_checkpoint(tmp_path: Path, synthetic_pt: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cut = tmp_path / "cut.pt"
    data = synthetic_pt.read_bytes()
    cut.write_bytes(data[: len(data) // 2])
    code, err = run_cli(capsys, "--weights", str(cut), "--out", str(tmp_path / "out"))
    assert code == 2
    assert_one_error_line(err, str(cut), "truncated or damaged PyTorch checkpoint")


def test_checkpoint_with_pickled_objects_is_not_executed(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "legacy.pt"
    torch.save({"model": {"w": torch.zeros(1)}, "args": argparse.Namespace(lr=0.1)}, path)
    code, err = run_cli(capsys, "--weights", str(path), "--out", str(tmp_path / "out"))
    assert code == 2
    assert_one_error_line(err, str(path), "not loaded for safety (weights_only=True)")


def test_checkpoint_without_a_state_dict(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "list.pt"
    torch.save([torch.zeros(3)], path)
    code, err = run_cli(capsys, "--weights", str(path), "--out", str(tmp_path / "out"))
    assert code == 2
    assert_one_error_line(err, str(path), "holds a list, not a state dict")


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ("missing", "missing tensor 'scratch.refinenet2.resConfUnit1.conv1.bias'"),
        ("extra", "unexpected tensor 'scratch.extra.weight'"),
        ("shape", "tensor 'scratch.output_conv.4.weight' has shape [2, 32, 1, 1], the model needs [1, 32, 1, 1]"),
    ],
)
def test_state_dict_of_another_model(
    tmp_path: Path,
    state_dict: OrderedDict[str, torch.Tensor],
    capsys: pytest.CaptureFixture[str],
    change: str,
    message: str,
) -> None:
    sd = OrderedDict(state_dict)
    if change == "missing":
        del sd["scratch.refinenet2.resConfUnit1.conv1.bias"]
    elif change == "extra":
        sd["scratch.extra.weight"] = torch.zeros(4)
    else:
        sd["scratch.output_conv.4.weight"] = torch.zeros(2, 32, 1, 1)
    path = tmp_path / f"{change}.pt"
    torch.save({"model": sd}, path)  # wrapped, as training checkpoints are
    code, err = run_cli(capsys, "--weights", str(path), "--out", str(tmp_path / "out"))
    assert code == 2
    assert_one_error_line(err, str(path), "not MiDaS v2.1 small weights", message)


def test_default_download_without_network_fails_fast(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, closed_port: int, capsys: pytest.CaptureFixture[str]
) -> None:
    # A proxy that refuses connections stands in for "no network" and guarantees nothing is downloaded
    monkeypatch.setenv("https_proxy", f"http://127.0.0.1:{closed_port}")
    monkeypatch.setenv("HTTPS_PROXY", f"http://127.0.0.1:{closed_port}")
    monkeypatch.delenv("no_proxy", raising=False)
    cache = tmp_path / "cache"
    start = time.monotonic()
    code, err = run_cli(capsys, "--cache-dir", str(cache), "--out", str(tmp_path / "out"))
    assert time.monotonic() - start < 20
    assert code == 2
    assert_one_error_line(err, f"cannot download {weights.OFFICIAL_URL}", "--weights PATH", "--onnx PATH")
    assert list(cache.iterdir()) == []  # no half-downloaded file left behind


def test_download_error_hides_the_password(
    tmp_path: Path, closed_port: int, no_proxy_env: None, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"http://alice:s3cret@127.0.0.1:{closed_port}/midas_v21_small_256.pt"
    code, err = run_cli(capsys, "--url", url, "--cache-dir", str(tmp_path), "--out", str(tmp_path / "out"))
    assert code == 2
    assert_one_error_line(err, f"cannot download http://127.0.0.1:{closed_port}/midas_v21_small_256.pt")
    assert "s3cret" not in err and "alice" not in err


@pytest.fixture
def http_file(tmp_path: Path) -> Iterator[tuple[str, bytes]]:
    """A real HTTP server on loopback serving one 3 MB file; yields (url, content)."""
    served = tmp_path / "served"
    served.mkdir()
    content = bytes(range(256)) * 12_000
    (served / "midas_v21_small_256.pt").write_bytes(content)

    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(served))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/midas_v21_small_256.pt", content
    finally:
        server.shutdown()
        thread.join(timeout=10)
        server.server_close()


def test_download_once_into_the_cache(tmp_path: Path, http_file: tuple[str, bytes], no_proxy_env: None) -> None:
    url, content = http_file
    digest = hashlib.sha256(content).hexdigest()
    cache = tmp_path / "cache"
    got = weights.fetch(url, cache, digest)
    assert got.path == cache / "midas_v21_small_256.pt"
    assert got.path.read_bytes() == content
    assert got.sha256 == digest and got.source == url
    assert [p.name for p in cache.iterdir()] == ["midas_v21_small_256.pt"]  # the .part file was renamed

    # the second time the cache answers, even with the server gone
    again = weights.fetch("http://127.0.0.1:9/midas_v21_small_256.pt", cache, digest)
    assert again.path == got.path


def test_download_with_the_wrong_sha256_is_deleted(
    tmp_path: Path, http_file: tuple[str, bytes], no_proxy_env: None
) -> None:
    url, _ = http_file
    with pytest.raises(ConvertError, match=r"sha256 is [0-9a-f]{64}, expected 0{64}; the download was deleted"):
        weights.fetch(url, tmp_path / "cache", "0" * 64)
    assert list((tmp_path / "cache").iterdir()) == []


def test_local_weights_with_the_wrong_sha256(
    tmp_path: Path, synthetic_pt: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, err = run_cli(capsys, "--weights", str(synthetic_pt), "--sha256", "ab" * 32, "--out", str(tmp_path))
    assert code == 2
    assert_one_error_line(err, str(synthetic_pt), f"expected {'ab' * 32}")


def test_missing_weights_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, err = run_cli(capsys, "--weights", str(tmp_path / "nope.pt"))
    assert code == 2
    assert_one_error_line(err, f"{tmp_path / 'nope.pt'}: no such file")


def test_not_an_onnx_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    fake = tmp_path / "model-small.onnx"
    fake.write_bytes(b"\x00garbage" * 100)
    code, err = run_cli(capsys, "--onnx", str(fake), "--precision", "fp32", "--out", str(tmp_path / "out"))
    assert code == 2
    assert_one_error_line(err, str(fake), "not an ONNX model OpenVINO can read")


@pytest.mark.parametrize(
    ("size", "message"),
    [
        ("250x256", "'250x256': width and height must be positive multiples of 32"),
        ("256", "'256' is not WxH"),
        ("0x192", "'0x192': width and height must be positive multiples of 32"),
    ],
)
def test_bad_input_size(capsys: pytest.CaptureFixture[str], size: str, message: str) -> None:
    code, err = run_cli(capsys, "--input-size", size)
    assert code == 2
    assert_one_error_line(err, "argument --input-size", message)


def test_bad_precision_and_conflicting_sources(capsys: pytest.CaptureFixture[str]) -> None:
    code, err = run_cli(capsys, "--precision", "fp32,int4")
    assert code == 2
    assert_one_error_line(err, "argument --precision", "choose from fp32,fp16,int8")
    code, err = run_cli(capsys, "--weights", "a.pt", "--onnx", "b.onnx")
    assert code == 2
    assert_one_error_line(err, "--onnx", "not allowed with argument --weights")


def test_bad_calibration_source_fails_before_converting(
    tmp_path: Path, synthetic_pt: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    start = time.monotonic()
    code, err = run_cli(capsys, "--weights", str(synthetic_pt), "--calib", str(tmp_path / "nothing"))
    assert code == 2
    assert_one_error_line(err, f"{tmp_path / 'nothing'}: no such file or directory")
    empty = tmp_path / "empty"
    empty.mkdir()
    code, err = run_cli(capsys, "--weights", str(synthetic_pt), "--calib", str(empty))
    assert code == 2
    assert_one_error_line(err, f"{empty}: no images")
    not_video = tmp_path / "clip.mp4"
    not_video.write_text("not a video")
    code, err = run_cli(capsys, "--weights", str(synthetic_pt), "--calib", str(not_video))
    assert code == 2
    assert_one_error_line(err, f"{not_video}: not a video OpenCV can decode")
    assert time.monotonic() - start < 10  # no model was converted before the check


def test_help_exits_zero(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    for option in ("--weights", "--onnx", "--url", "--sha256", "--cache-dir", "--precision", "--input-size", "--calib"):
        assert option in out


def test_calibration_frames_are_spread_over_all_sources() -> None:
    assert calibration.pick_indices(10, 4) == [0, 3, 6, 9]
    assert calibration.pick_indices(3, 300) == [0, 1, 2]
    sources = [calibration.open_source(p) for p in calibration.DEFAULT_CALIBRATION]
    assert [s.count for s in sources] == [6, 221]
    frames = calibration.load_frames(sources, Resizer(fixed_size=(256, 192)), 8)
    assert len(frames) == 8
    assert all(f.shape == (192, 256, 3) and f.dtype == "uint8" for f in frames)
    # evenly spread over 227 frames: the first NYU image comes first, the clip provides the rest
    image = cv2.imread(str(sources[0].images[0]))
    assert image is not None
    nyu_first = Resizer(fixed_size=(256, 192))(image)
    assert (frames[0] == nyu_first).all()
    assert not any((f == nyu_first).all() for f in frames[1:])


def test_calibration_frames_are_the_daemons_frames() -> None:
    """Aspect ratio kept per source, as the daemon resizes: NYU 640x480 -> 256x192, the clip 960x540 -> 256x128."""
    sources = [calibration.open_source(p) for p in calibration.DEFAULT_CALIBRATION]
    frames = calibration.load_frames(sources, Resizer(MIDAS_V21_SMALL), 8)
    assert frames[0].shape == (192, 256, 3)
    assert all(f.shape == (128, 256, 3) for f in frames[1:])


SPEC_FIELDS = "name: tiny\nlong_side: 518\nmultiple: 14\nmean: [0.5, 0.5, 0.5]\nstd: [0.25, 0.25, 0.25]\n"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (SPEC_FIELDS.replace("multiple: 14", "multiple: fourteen"), "multiple: 'fourteen' is not a whole number > 0"),
        (SPEC_FIELDS.replace("long_side: 518", "long_side: 500"), "long_side: 500 is not a multiple of multiple (14)"),
        (SPEC_FIELDS.replace("std: [0.25, 0.25, 0.25]", "std: [0.25, 0]"), "std: [0.25, 0] is not three finite"),
        (SPEC_FIELDS.replace("mean: [0.5, 0.5, 0.5]\n", ""), "mean: missing"),
        (SPEC_FIELDS + "resize_filter: lanczos\n", "resize_filter: 'lanczos' is not one of bicubic"),
        (SPEC_FIELDS + "colour: RGB\n", "colour: unknown field"),
        ("- name\n", "expected a mapping of model spec fields"),
        ("name: [unclosed\n", "not valid YAML or JSON at line 2"),
    ],
    ids=["type", "long-side", "std", "missing", "filter", "unknown", "list", "syntax"],
)
def test_bad_model_spec_file(tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str, message: str) -> None:
    spec = tmp_path / "spec.yaml"
    spec.write_text(text)
    code, err = run_cli(capsys, "--onnx", str(tmp_path / "model.onnx"), "--model-spec", str(spec))
    assert code == 2
    assert_one_error_line(err, f"{spec}: ", message)


def test_model_spec_decides_valid_input_sizes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    spec = tmp_path / "spec.json"
    spec.write_text('{"name": "tiny", "long_side": 518, "multiple": 14, "mean": [0.5, 0.5, 0.5], "std": [1, 1, 1]}')
    code, err = run_cli(capsys, "--onnx", "m.onnx", "--model-spec", str(spec), "--input-size", "256x192")
    assert code == 2
    assert_one_error_line(err, "argument --input-size", "'256x192': width and height must be positive multiples of 14")
    code, err = run_cli(capsys, "--weights", "a.pt", "--model-spec", str(spec))
    assert code == 2
    assert_one_error_line(err, "argument --model-spec: only with --onnx")
    code, err = run_cli(capsys, "--onnx", "m.onnx", "--model-spec", str(tmp_path / "nope.yaml"))
    assert code == 2
    assert_one_error_line(err, f"{tmp_path / 'nope.yaml'}: no such file")


def test_redact_url() -> None:
    assert weights.redact_url("https://u:p@host:8443/a.pt?x=1") == "https://host:8443/a.pt?x=1"
    assert weights.redact_url(weights.OFFICIAL_URL) == weights.OFFICIAL_URL


def test_conversion_leaves_the_callers_logging_alone() -> None:
    """OpenVINO's converter sets the root logger to ERROR; the daemon's and the tests' warnings must survive it."""
    root = logging.getLogger()
    before = root.level
    try:
        root.setLevel(logging.WARNING)
        torch_to_ov(MidasSmall(), (64, 64))
        assert root.level == logging.WARNING
    finally:
        root.setLevel(before)
