"""Conversion of MiDaS v2.1 small to OpenVINO IR (FP32, FP16, INT8): ``python -m convert`` / ``edge-depth convert``.

Importing this package is cheap on purpose: torch and NNCF are imported only by the steps that need them,
so that ``--onnx`` runs on a machine without torch.
"""

from __future__ import annotations


class ConvertError(Exception):
    """A problem with the user's input (file, URL, option): reported as one ``error:`` line, exit code 2."""


class AccuracyGateError(Exception):
    """A converted model misses the accuracy the user asked for (``--max-drop``): exit code 1."""
