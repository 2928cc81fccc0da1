"""Commands that read data never create an empty embedded store: run where there is none (no
DATABASE_URL, no PostgreSQL in COUPON_LEDGER_DATA_DIR or ./.coupon-ledger), they exit 2 naming
the folder they looked in, and leave it absent."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.support.postgres import CLI, cli_env


def run_in(cwd: Path, *args: str, data_dir: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [CLI, *args], cwd=cwd, env=cli_env(None, data_dir), capture_output=True, text=True, timeout=60, check=False
    )


@pytest.mark.parametrize(
    "command",
    [
        ("verify",),
        ("rebuild",),
        ("retailer", "key", "demo"),
        (
            "campaign",
            "create",
            "--retailer",
            "demo",
            "--name",
            "n",
            "--prefix",
            "P",
            "--count",
            "1",
            "--coupon",
            '{"discount_type": "fixed", "discount_value": "5"}',
        ),
    ],
    ids=lambda command: " ".join(command[:2]),
)
def test_a_data_reading_command_run_from_another_folder_refuses_to_create_a_store(
    tmp_path: Path, command: tuple[str, ...]
) -> None:
    result = run_in(tmp_path, *command)
    assert result.returncode == 2, result.stdout + result.stderr
    assert f"no coupon-ledger store in {tmp_path.resolve() / '.coupon-ledger'}" in result.stderr
    assert "OK" not in result.stdout
    assert not (tmp_path / ".coupon-ledger").exists()


def test_verify_names_the_data_dir_it_was_given(tmp_path: Path) -> None:
    elsewhere = tmp_path / "kept-here"
    result = run_in(tmp_path, "verify", data_dir=elsewhere)
    assert result.returncode == 2, result.stdout + result.stderr
    assert f"no coupon-ledger store in {elsewhere.resolve()}" in result.stderr
    assert not elsewhere.exists()
