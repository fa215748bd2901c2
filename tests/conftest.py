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


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Every test under tests/integration is an integration test (it needs the engine and the lab), and none
    elsewhere is: `-m "not integration"` is exactly the unit tests, which CI runs first."""
    for item in items:
        integration = "integration" in item.path.parts[-3:-1]
        if integration:
            item.add_marker(pytest.mark.integration)
        elif item.get_closest_marker("integration") is not None:
            raise pytest.UsageError(f"{item.nodeid} is marked integration but is not under tests/integration")
