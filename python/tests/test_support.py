"""The test helpers' own rules: what counts as CI, and what a missing service does there and elsewhere (the same
as the Rust testkit's `service` module)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import pytest

from conftest import current_test, service_missing, under_ci


@pytest.mark.parametrize(
    ("value", "ci"),
    [
        (None, False),
        ("", False),
        (" ", False),
        ("0", False),
        ("false", False),
        ("False", False),
        ("FALSE", False),
        ("true", True),
        ("TRUE", True),
        ("1", True),
        ("yes", True),
        ("woodpecker", True),
    ],
)
def test_ci_is_set_and_not_empty_0_or_false(monkeypatch: pytest.MonkeyPatch, value: Optional[str], ci: bool) -> None:
    if value is None:
        monkeypatch.delenv("CI", raising=False)
    else:
        monkeypatch.setenv("CI", value)
    assert under_ci() is ci


def test_a_missing_service_fails_under_ci(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("CI", "true")
    monkeypatch.setenv("CODEPILOT_SKIP_LOG", str(tmp_path / "skips"))
    with pytest.raises(pytest.fail.Exception) as failed:
        service_missing("a thing", "install it")
    test = current_test()
    assert test.endswith("test_support.py::test_a_missing_service_fails_under_ci"), test
    assert str(failed.value) == (
        f"{test} needs a thing, which is missing, and under CI (CI is set) tests never skip: install it"
    )
    assert not (tmp_path / "skips").exists()


def test_a_missing_service_skips_elsewhere_and_is_logged(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("CI", "false")
    monkeypatch.setenv("CODEPILOT_SKIP_LOG", str(tmp_path / "skips"))
    test = current_test()
    assert test.endswith("test_support.py::test_a_missing_service_skips_elsewhere_and_is_logged"), test
    for _ in range(2):
        with pytest.raises(pytest.skip.Exception) as skipped:
            service_missing("a thing", "install it")
        assert str(skipped.value) == f"{test} needs a thing; install it"
    assert (tmp_path / "skips").read_text() == f"{test}: needs a thing\n" * 2
