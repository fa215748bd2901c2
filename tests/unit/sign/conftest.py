"""Fixtures of the signing library's tests: two cosign keys, ours and another."""

from __future__ import annotations

import pytest

from ci_images.sign import keys


@pytest.fixture(scope="module")
def ours() -> keys.SigningKey:
    return keys.SigningKey(keys.generate_private_key())


@pytest.fixture(scope="module")
def theirs() -> keys.SigningKey:
    return keys.SigningKey(keys.generate_private_key())
