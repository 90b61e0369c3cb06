"""The test helpers' own rules: what counts as CI, and what a missing service does there and elsewhere."""

from __future__ import annotations

from typing import Optional

import pytest

from conftest import service_missing, under_ci


@pytest.mark.parametrize(
    ("value", "ci"),
    [
        (None, False),
        ("", False),
        ("0", False),
        ("false", False),
        ("FALSE", False),
        ("False", False),
        ("true", True),
        ("1", True),
        ("yes", True),
        ("TRUE", True),
    ],
)
def test_ci_is_set_and_not_empty_0_or_false(monkeypatch: pytest.MonkeyPatch, value: Optional[str], ci: bool) -> None:
    if value is None:
        monkeypatch.delenv("CI", raising=False)
    else:
        monkeypatch.setenv("CI", value)
    assert under_ci() is ci


def test_a_missing_service_fails_under_ci_and_skips_elsewhere(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="the thing is not set; CI must provide it"):
        service_missing("the thing is not set")
    monkeypatch.setenv("CI", "false")
    with pytest.raises(pytest.skip.Exception, match="the thing is not set"):
        service_missing("the thing is not set")
