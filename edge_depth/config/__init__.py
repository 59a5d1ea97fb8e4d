"""Configuration: the strict schema of the YAML file, its loader (line numbers, substitution) and error text.

Callers import from here (``from edge_depth.config import load_config``). The modules:

- ``schema``: the models of the file (Config and its sections); ``alerts``: the per-camera alert models;
  ``base``: StrictModel and the marks the generic code reads;
- ``sources``: what a camera's ``source`` names (device, stream, recording, file);
- ``loader``: ``load_config`` and ``check_config``, built from ``document`` (YAML with the line of every key),
  ``substitution`` (``${ENV}``, ``${credential:NAME}``), ``errors`` (ConfigError and the error lines) and
  ``paths`` (relative paths, files that must exist);
- ``reference``: the ``--schema`` table.
"""

from edge_depth.config.alerts import CameraAlertsConfig
from edge_depth.config.errors import ConfigError
from edge_depth.config.loader import check_config, load_config
from edge_depth.config.paths import resolve_paths
from edge_depth.config.reference import schema_reference
from edge_depth.config.schema import (
    CameraConfig,
    Config,
    HeatmapConfig,
    HomeAssistantConfig,
    LoggingConfig,
    ModelConfig,
    MqttConfig,
    ReconnectConfig,
    TlsConfig,
)
from edge_depth.config.sources import RECORDING_SUFFIX, SourceKind, classify_source

__all__ = [
    "RECORDING_SUFFIX",
    "CameraAlertsConfig",
    "CameraConfig",
    "Config",
    "ConfigError",
    "HeatmapConfig",
    "HomeAssistantConfig",
    "LoggingConfig",
    "ModelConfig",
    "MqttConfig",
    "ReconnectConfig",
    "SourceKind",
    "TlsConfig",
    "check_config",
    "classify_source",
    "load_config",
    "resolve_paths",
    "schema_reference",
]
