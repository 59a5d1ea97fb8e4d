"""Shared fixtures. Each service lives in its own module under tests/support and is loaded as a plugin."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest_plugins: list[str] = [
    "tests.support.rtsp",
    "tests.support.broker",
    "tests.support.models",
    "tests.support.daemon",
]

FIXTURES = Path(__file__).parent / "fixtures"


@pytest.fixture(scope="session")
def fixtures_dir() -> Path:
    return FIXTURES


@pytest.fixture(scope="session")
def sample_clip() -> Path:
    """The real 960x540, 25 fps, 221-frame dash-camera clip (see NOTICE)."""
    return FIXTURES / "video" / "solidWhiteRight.mp4"
