"""Every test starts from an environment without the tool's own settings: a developer who exported the lab's
variables (`eval "$(invoke lab-up)"`) or runs inside GitHub Actions gets the same results as CI."""

from __future__ import annotations

import os

import pytest


@pytest.fixture(autouse=True)
def _no_ambient_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    for key in list(os.environ):
        if key.startswith(("CI_IMAGES_", "GITHUB_", "COSIGN_")) or key == "ACTIONS_ID_TOKEN_REQUEST_URL":
            monkeypatch.delenv(key)
