"""Config text checked by the daemon's own schema, with the same ``<file>:<line>: <key>: <message>`` lines as
``edge-depth check-config``; and a camera's ``alerts`` block written from the zone editor's drawing.

Only the schema is checked here: ``${...}`` references are left as written and files named in the text are not
looked for (they live on the daemon's machine); ``edge-depth check-config`` there does both.
"""

from __future__ import annotations

import re
import tempfile
from dataclasses import replace
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from edge_depth.config.alerts import CameraAlertsConfig, ReferenceMode
from edge_depth.config.document import Document, read_document
from edge_depth.config.errors import ConfigError, validation_errors
from edge_depth.config.schema import Config

Section = Literal["config", "alerts"]
_WRAPPER_CAMERA = {"name": "editor", "source": 0}
_MAX_TEXT_CHARS = 1_000_000


def check_text(text: str, section: Section, display_name: str) -> list[str]:
    """Error lines for ``text``: a whole config file (``config``) or one camera's ``alerts:`` block; [] when valid.

    ``display_name`` stands for the file in the lines.
    """
    if len(text) > _MAX_TEXT_CHARS:
        return [f"{display_name}:1: the text is longer than {_MAX_TEXT_CHARS} characters"]
    with tempfile.TemporaryDirectory(prefix="edge-depth-check-") as directory:
        path = Path(directory) / "config.yaml"
        path.write_text(text, encoding="utf-8")
        try:
            doc = read_document(path)
        except ConfigError as error:
            return [line.replace(str(path), display_name) for line in error.errors]
    doc = replace(doc, path=Path(display_name))
    if section == "config":
        return _validate(doc)
    if set(doc.data) != {"alerts"}:
        return [f"{display_name}:1: expected one `alerts:` block (a camera's alerts section), found {sorted(doc.data)}"]
    # Checked in place under a camera, so unknown keys get the same "did you mean" as in a whole file.
    wrapped = Document(
        doc.path,
        {"cameras": [{**_WRAPPER_CAMERA, "alerts": doc.data["alerts"]}]},
        {("cameras", 0, *loc): position for loc, position in doc.positions.items()},
    )
    prefix = re.compile(r"^(.*?:\d+: )cameras\[0\]\.")
    return [prefix.sub(r"\1", line) for line in _validate(wrapped)]


def _validate(doc: Document) -> list[str]:
    try:
        Config.model_validate(doc.data)
    except ValidationError as error:
        return validation_errors(doc, error)
    return []


class _Drawn(BaseModel):
    # A coordinate or a distance of NaN or infinity has no place in YAML the schema can check: refused (422)
    # like any other malformed drawing.
    model_config = ConfigDict(allow_inf_nan=False)


class DrawnZone(_Drawn):
    name: str = Field(..., max_length=64, description="Zone id (lower case, digits, '-', '_').")
    polygon: list[tuple[float, float]] = Field(..., max_length=64, description="Normalised [x, y] corners.")
    enter: float | None = Field(None, description="Zone threshold in the reference mode's unit; default if null.")


class DrawnExclusion(_Drawn):
    name: str = Field(..., max_length=64, description="Label, e.g. 'bed'.")
    polygon: list[tuple[float, float]] = Field(..., max_length=64, description="Normalised [x, y] corners.")


class DrawnPoint(_Drawn):
    x: float = Field(..., description="Normalised horizontal position.")
    y: float = Field(..., description="Normalised vertical position.")
    distance_m: float = Field(..., description="True distance from the camera (m).")
    name: str | None = Field(None, max_length=64, description="Label, e.g. 'door frame'.")


class Drawing(_Drawn):
    """What the zone editor drew for one camera; the schema checks it once it is YAML."""

    mode: ReferenceMode | None = Field(None, description="Reference mode; the camera's own when null.")
    zones: list[DrawnZone] = Field(default_factory=list, max_length=64)
    exclusions: list[DrawnExclusion] = Field(default_factory=list, max_length=64)
    points: list[DrawnPoint] = Field(default_factory=list, max_length=64)


def alerts_yaml(current: CameraAlertsConfig, drawing: Drawing) -> str:
    """The camera's ``alerts:`` block with the drawing's zones, exclusions and reference points in place.

    Everything else is the camera's current setting, written only where it differs from the default; a zone
    that keeps its name keeps its other settings (severity, durations, ...).
    """
    data: dict[str, Any] = current.model_dump(mode="json", exclude_defaults=True)
    before = {zone.name: zone.model_dump(mode="json", exclude_defaults=True) for zone in current.zones}
    zones = []
    for zone in drawing.zones:
        entry = {**before.get(zone.name, {}), "name": zone.name, "polygon": _corners(zone.polygon)}
        if zone.enter is not None:
            entry["enter"] = zone.enter
        zones.append(_ordered(entry))
    data["zones"] = zones
    data["exclusions"] = [{"name": e.name, "polygon": _corners(e.polygon)} for e in drawing.exclusions]
    reference: dict[str, Any] = data.setdefault("reference", {})
    if drawing.mode is not None:
        reference["mode"] = drawing.mode
    if drawing.points or "metric" in reference:
        points = [
            {**({"name": p.name} if p.name else {}), "x": _r(p.x), "y": _r(p.y), "distance_m": p.distance_m}
            for p in drawing.points
        ]
        reference.setdefault("metric", {})["points"] = points
    if reference.get("mode") == "baseline":
        del reference["mode"]  # the default
    for key in ("reference", "zones", "exclusions"):
        if not data.get(key):
            data.pop(key, None)
    order = ("reference", "zones", "exclusions", "fall", "health")
    ordered = {key: data[key] for key in order if key in data} | data
    return yaml.safe_dump({"alerts": ordered}, sort_keys=False, default_flow_style=None, width=120)


def _ordered(zone: dict[str, Any]) -> dict[str, Any]:
    return {"name": zone["name"], "polygon": zone["polygon"]} | zone


def _corners(polygon: list[tuple[float, float]]) -> list[list[float]]:
    return [[_r(x), _r(y)] for x, y in polygon]


def _r(value: float) -> float:
    return round(float(value), 4)
