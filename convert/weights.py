"""Where the weights come from: the official release file (downloaded once into a cache) or a local file.

Every failure a user can cause (no network, a wrong or truncated file, a state dict of another model) is a
``ConvertError`` with one line naming the file or URL, never a traceback.
"""

from __future__ import annotations

import hashlib
import os
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tqdm import tqdm

from convert import ConvertError

if TYPE_CHECKING:
    import torch

OFFICIAL_URL = "https://github.com/isl-org/MiDaS/releases/download/v2_1/midas_v21_small_256.pt"
DEFAULT_CACHE_DIR = Path("~/.cache/edge-depth")
DOWNLOAD_TIMEOUT_S = 15.0
_CHUNK = 1 << 20


@dataclass(frozen=True, slots=True)
class WeightsFile:
    """A local weights file and how to describe it in the manifest (``source``: URL or path, no credentials)."""

    path: Path
    source: str
    sha256: str


def redact_url(url: str) -> str:
    """``url`` without a user name or password (they must never reach a log line or a manifest)."""
    parts = urllib.parse.urlsplit(url)
    if parts.username is None and parts.password is None:
        return url
    host = parts.hostname or ""
    if parts.port is not None:
        host = f"{host}:{parts.port}"
    return urllib.parse.urlunsplit(parts._replace(netloc=host))


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def local_file(path: Path) -> WeightsFile:
    """A user-given file (``--weights`` or ``--onnx``), checked to be a readable regular file."""
    if not path.is_file():
        raise ConvertError(f"{path}: no such file")
    try:
        digest = file_sha256(path)
    except OSError as exc:
        raise ConvertError(f"{path}: cannot read ({exc.strerror or exc})") from exc
    return WeightsFile(path=path, source=str(path), sha256=digest)


def fetch(url: str, cache_dir: Path, sha256: str | None = None, timeout: float = DOWNLOAD_TIMEOUT_S) -> WeightsFile:
    """The file at ``url``, downloaded once into ``cache_dir`` (a ``.part`` file renamed when complete).

    A cached copy is reused without touching the network. ``sha256`` (hex), when given, is checked on the
    cached or downloaded file; a mismatching download is deleted.
    """
    shown = redact_url(url)
    name = Path(urllib.parse.urlsplit(url).path).name or "weights.pt"
    cache_dir = cache_dir.expanduser()
    target = cache_dir / name
    if not target.is_file():
        _download(url, shown, cache_dir, target, timeout)
    digest = file_sha256(target)
    if sha256 is not None and digest != sha256.lower():
        target.unlink()
        raise ConvertError(f"{shown}: sha256 is {digest}, expected {sha256.lower()}; the download was deleted")
    return WeightsFile(path=target, source=shown, sha256=digest)


def _download(url: str, shown: str, cache_dir: Path, target: Path, timeout: float) -> None:
    offline = (
        "to convert offline, pass --weights PATH (a local midas_v21_small_256.pt) or --onnx PATH (model-small.onnx): "
        "make model WEIGHTS=PATH, or make model ONNX=PATH"
    )
    try:
        cache_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConvertError(f"{cache_dir}: cannot create the cache directory ({exc.strerror or exc})") from exc
    part = target.with_name(target.name + ".part")
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response, part.open("wb") as out:
            total = int(response.headers.get("Content-Length") or 0) or None
            with tqdm(total=total, unit="B", unit_scale=True, unit_divisor=1024, desc=f"download {target.name}") as bar:
                for chunk in iter(lambda: response.read(_CHUNK), b""):
                    out.write(chunk)
                    bar.update(len(chunk))
            if total is not None and out.tell() != total:
                raise ConvertError(f"{shown}: download ended after {out.tell()} of {total} bytes; {offline}")
    except (TimeoutError, urllib.error.URLError, OSError) as exc:
        part.unlink(missing_ok=True)
        reason = getattr(exc, "reason", None) or getattr(exc, "strerror", None) or exc
        raise ConvertError(f"cannot download {shown} ({reason}); {offline}") from exc
    except ConvertError:
        part.unlink(missing_ok=True)
        raise
    os.replace(part, target)


def load_state_dict(path: Path, expected: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The state dict in ``path`` (bare, or wrapped as ``{"model": sd}`` / ``{"state_dict": sd}``).

    Loaded with ``weights_only=True`` (no code in the file runs) and checked against ``expected``: the first
    missing, mis-shaped or extra tensor, in the model's order, is named in the error.
    """
    import torch  # noqa: PLC0415 -- torch only when converting from PyTorch: --onnx runs without it

    try:
        loaded: Any = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many unrelated types for a bad file; all mean "cannot load"
        raise ConvertError(f"{path}: {_why_unloadable(path, exc)}") from exc
    state = _unwrap(loaded, torch.Tensor)
    if state is None:
        raise ConvertError(f"{path}: holds a {type(loaded).__name__}, not a state dict of tensors")
    problem = first_mismatch(state, expected)
    if problem is not None:
        raise ConvertError(f"{path}: not MiDaS v2.1 small weights: {problem}")
    return state


def _why_unloadable(path: Path, exc: Exception) -> str:
    with path.open("rb") as f:
        head = f.read(4)
    if not head:
        return "empty file, not a PyTorch checkpoint"
    if head != b"PK\x03\x04" and head[:1] != b"\x80":  # torch.save writes a zip archive; old torch a pickle
        return "not a PyTorch checkpoint (wrong kind of file: neither a zip archive nor a pickle)"
    if "Weights only load failed" in str(exc):
        return (
            "holds Python objects besides tensors, which are not loaded for safety (weights_only=True); "
            "save model.state_dict() instead"
        )
    reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return f"truncated or damaged PyTorch checkpoint ({reason[:160]})"


def _unwrap(loaded: Any, tensor_type: type) -> dict[str, torch.Tensor] | None:
    if isinstance(loaded, Mapping):
        for key in ("model", "state_dict"):
            inner = loaded.get(key)
            if isinstance(inner, Mapping):
                loaded = inner
                break
        if all(isinstance(k, str) and isinstance(v, tensor_type) for k, v in loaded.items()) and loaded:
            return dict(loaded)
    return None


def first_mismatch(state: Mapping[str, torch.Tensor], expected: Mapping[str, torch.Tensor]) -> str | None:
    """A description of the first tensor of ``state`` that does not fit ``expected``, or None when all fit."""
    for name, ref in expected.items():
        if name not in state:
            return f"missing tensor {name!r}"
        if tuple(state[name].shape) != tuple(ref.shape):
            return f"tensor {name!r} has shape {list(state[name].shape)}, the model needs {list(ref.shape)}"
    for name in state:
        if name not in expected:
            return f"unexpected tensor {name!r}"
    return None
