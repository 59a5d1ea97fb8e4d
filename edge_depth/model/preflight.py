"""Checks of the ``model`` section that need OpenVINO, run by ``check-config`` and before the daemon starts.

A device the box does not have, a cache directory the service cannot write, or an IR whose weights file was
cut short all pass the schema and would otherwise fail at compile time with a long C++ traceback: under
``Restart=on-failure`` that is a crash loop. Each is reported as one line naming the key instead.
"""

from __future__ import annotations

import re
import tempfile
from pathlib import Path

import openvino as ov

from edge_depth.config.schema import Config

Loc = tuple[str | int, ...]

# OpenVINO prefixes its messages with the C++ places it passed through; the user needs the rest.
_NOISE = re.compile(r"^(Exception from \S+:\d+:|Check '.*' failed at \S+:\d+:)$")
_VIRTUAL_DEVICES = ("AUTO", "MULTI", "HETERO", "BATCH")


def openvino_message(exc: BaseException) -> str:
    """OpenVINO's own explanation of ``exc`` on one line, without the C++ file and line prefixes."""
    lines = [line.strip() for line in str(exc).splitlines()]
    useful = [line for line in lines if line and not _NOISE.match(line)]
    return " ".join(useful) or type(exc).__name__


def requested_devices(device: str) -> tuple[str, tuple[str, ...]]:
    """``"AUTO:GPU,CPU"`` -> ``("AUTO", ("GPU", "CPU"))``; ``"GPU.1"`` -> ``("GPU.1", ("GPU.1",))``."""
    head, _, tail = device.partition(":")
    if head in _VIRTUAL_DEVICES:
        return head, tuple(d.strip() for d in tail.split(",") if d.strip())
    return device, (device,)


def missing_devices(device: str, available: list[str]) -> list[str]:
    """The physical devices ``device`` needs that OpenVINO does not see (``GPU`` matches ``GPU.0``, ``GPU.1``).

    AUTO with no list picks among what exists (at least the CPU), so it never misses; AUTO:GPU,CPU needs one
    of its candidates; MULTI and HETERO need all of theirs.
    """
    kind, wanted = requested_devices(device)
    if kind == "AUTO" and not wanted:
        return []

    def present(name: str) -> bool:
        return any(a == name or a.split(".")[0] == name for a in available)

    missing = [name for name in wanted if not present(name)]
    if kind == "AUTO" and len(missing) < len(wanted):
        return []
    return missing


def model_problems(config: Config, core: ov.Core | None = None) -> list[tuple[Loc, str]]:
    """(config key, one-line problem) for every reason ``config.model`` cannot be loaded on this machine."""
    core = core or ov.Core()
    model = config.model
    problems: list[tuple[Loc, str]] = []
    available = list(core.available_devices)
    missing = missing_devices(model.device, available)
    if missing:
        problems.append(
            (
                ("model", "device"),
                f"{model.device}: OpenVINO finds no {', '.join(missing)} on this machine "
                f"(it has {', '.join(available) or 'no device'})",
            )
        )
    if model.cache_dir is not None:
        problem = _unwritable(model.cache_dir)
        if problem:
            problems.append((("model", "cache_dir"), problem))
    if model.path.suffix == ".xml" and model.path.is_file() and model.path.with_suffix(".bin").is_file():
        try:
            core.read_model(model.path)
        except RuntimeError as exc:
            problems.append((("model", "path"), f"{model.path}: {openvino_message(exc)}"))
    return problems


def _unwritable(directory: Path) -> str | None:
    """Why the compiled-model cache cannot be written in ``directory``; None when a probe file can be.

    A real write, not ``os.access``: a read-only mount (``ProtectSystem=strict``) or a file in the way fails
    it for root too. The directory is created as the daemon would create it.
    """
    try:
        directory.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=directory):
            pass
    except OSError as exc:
        return f"{directory}: cannot write the compiled-model cache here ({exc.strerror or exc})"
    return None
