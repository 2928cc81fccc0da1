"""Retailer names are unique, in the CLI and in the database; databases from before keep working."""

from __future__ import annotations

import json
from uuid import uuid4

import psycopg
from psycopg import errors

from api.database import apply_schema
from tests.support.postgres import run_cli, scalar


def test_a_second_retailer_with_a_taken_name_is_refused_with_exit_1_and_nothing_created(database_url: str) -> None:
    first = run_cli(database_url, "retailer", "create", "demo")
    assert first.returncode == 0, first.stderr
    assert json.loads(first.stdout.strip().splitlines()[-1])["retailer_id"]

    for again in ("demo", "  DEMO "):
        refused = run_cli(database_url, "retailer", "create", again)
        assert refused.returncode == 1
        assert "a retailer named" in refused.stderr and "already exists" in refused.stderr
        assert refused.stdout == ""
    assert scalar(database_url, "SELECT count(*) FROM retailers") == 1
    # The first retailer's two keys, a secret one and a publishable one; none for the refused ones.
    assert scalar(database_url, "SELECT count(*) FROM api_keys") == 2


def test_an_empty_name_is_refused_with_exit_2_before_any_database_is_touched() -> None:
    refused = run_cli("postgresql://nobody@127.0.0.1:1/none", "retailer", "create", " ")
    assert refused.returncode == 2
    assert "must not be empty" in refused.stderr


def test_the_database_itself_rejects_a_duplicate_name(database_url: str) -> None:
    with psycopg.connect(database_url) as conn:
        conn.execute("INSERT INTO retailers (id, name) VALUES (%s, 'Shop')", (uuid4(),))
    try:
        with psycopg.connect(database_url) as conn:
            conn.execute("INSERT INTO retailers (id, name) VALUES (%s, ' shop')", (uuid4(),))
    except errors.UniqueViolation:
        pass
    else:
        raise AssertionError("a duplicate name was stored")


def test_duplicates_of_a_database_from_before_are_renamed_so_the_schema_applies(database_url: str) -> None:
    with psycopg.connect(database_url) as conn:
        conn.execute("DROP INDEX retailers_name_unique")
        ids = [uuid4() for _ in range(3)]
        for n, retailer_id in enumerate(ids):
            conn.execute(
                "INSERT INTO retailers (id, name, created_at) VALUES (%s, %s, now() + make_interval(secs => %s))",
                (retailer_id, "Twin" if n != 1 else "twin ", n),
            )

    apply_schema(database_url)  # what every start does

    with psycopg.connect(database_url) as conn:
        names = dict(conn.execute("SELECT id, name FROM retailers").fetchall())
    assert names[ids[0]] == "Twin"  # the oldest keeps its name
    assert names[ids[1]] == f"twin  ({ids[1]})"
    assert names[ids[2]] == f"Twin ({ids[2]})"
    refused = run_cli(database_url, "retailer", "create", "TWIN")
    assert refused.returncode == 1
