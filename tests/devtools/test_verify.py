"""devtools.verify: `learnd verify`, the end-to-end self check, passes on a healthy learnd and says what it checked."""

from __future__ import annotations

from pathlib import Path

from tests.test_cli import learnd


def test_verify_passes_and_says_so(tmp_path: Path) -> None:
    """`learnd verify` runs its end-to-end self check (daemon, kills, backfill, planted edges) and exits 0."""
    result = learnd(tmp_path, "verify", "--trades", "900", "--seed", "5", check=False)
    text = result.stdout.decode()
    assert result.returncode == 0, text
    assert "FAIL" not in text
    assert "7 passed, 0 failed" in text
