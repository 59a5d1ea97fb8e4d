"""``manifest.json``: what each IR in a directory was converted from, how, and how well it does.

One manifest per output directory, one entry per precision under ``"precisions"``; converting again into
the same directory replaces the entries of the precisions converted and keeps the others.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Mapping
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

from convert import ConvertError

MANIFEST_NAME = "manifest.json"
FORMAT_VERSION = 1
TOOLS = ("openvino", "nncf", "torch", "onnx", "edge-depth")


def tool_versions() -> dict[str, str | None]:
    """Installed versions of the conversion tools, read from package metadata (nothing is imported)."""
    versions: dict[str, str | None] = {}
    for name in TOOLS:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def now_utc() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def read_manifest(path: Path) -> dict[str, Any]:
    """The manifest at ``path``, or an empty one when there is none yet."""
    if not path.exists():
        return {"format": FORMAT_VERSION, "precisions": {}}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ConvertError(f"{path}: existing manifest is unreadable ({exc}); move it away and convert again") from exc
    if not isinstance(data, dict) or not isinstance(data.get("precisions"), dict):
        raise ConvertError(f'{path}: existing manifest has no "precisions" table; move it away and convert again')
    return data


def update_manifest(out_dir: Path, entries: Mapping[str, Mapping[str, Any]]) -> Path:
    """Merge ``entries`` (precision -> entry) into ``out_dir/manifest.json``, written atomically."""
    path = out_dir / MANIFEST_NAME
    data = read_manifest(path)
    data["format"] = FORMAT_VERSION
    data["precisions"].update({precision: dict(entry) for precision, entry in entries.items()})
    data["updated"] = now_utc()
    fd, tmp = tempfile.mkstemp(prefix=".manifest.", suffix=".json", dir=out_dir)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(data, f, indent=2, sort_keys=False)
            f.write("\n")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path
