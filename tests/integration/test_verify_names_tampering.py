"""`coupon-ledger verify` recomputes every hash chain: an event altered, two events swapped and a
stream cut short behind the application's back (triggers disabled, as someone with the database's
keys could) are each named, with the coupon; a saved digest whose root or signature was forged is
refused, and a digest saved before a cut proves the log no longer extends it."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from uuid import UUID

import psycopg
import pytest

from api.signing import DigestSigner
from ledger.application import CouponLedger
from ledger.digest import AuditLog
from ledger.domain import coupon_id_for
from ledger.event_store import LedgerRecorder
from ledger.timestamps import format_timestamp
from projections.coupons import CouponsView, construct_view
from projections.verify import verify
from tests.support.commands import apply, create_coupon, deactivate, reverse
from tests.support.ledger import D
from tests.support.postgres import project_to_head, run_cli


@pytest.fixture
def view(env: dict[str, str]) -> Iterator[CouponsView]:
    view = construct_view(env)
    yield view
    view.datastore.close()


def history(ledger: CouponLedger, retailer_id: UUID) -> UUID:
    """TAMPER: created, redeemed three times (one reversed), deactivated; a clean neighbour."""
    create_coupon(ledger, retailer_id, "TAMPER", "fixed", D("5.00"), max_uses=10)
    receipts = [apply(ledger, retailer_id, "TAMPER", D("50.00"), order_id=f"o-{n}") for n in range(3)]
    reverse(ledger, retailer_id, receipts[0].redemption_id, "cancelled")
    deactivate(ledger, retailer_id, "TAMPER")
    create_coupon(ledger, retailer_id, "NEIGHBOUR", "fixed", D("5.00"))
    apply(ledger, retailer_id, "NEIGHBOUR", D("50.00"))
    return coupon_id_for(retailer_id, "TAMPER")


def behind_the_back(url: str, *statements: tuple[str, tuple[object, ...]]) -> None:
    with psycopg.connect(url, autocommit=True) as conn, conn.transaction():
        conn.execute("SET LOCAL session_replication_role = replica")  # no trigger fires
        for statement, params in statements:
            conn.execute(statement, params)  # type: ignore[arg-type]


def violations(ledger: CouponLedger, view: CouponsView, **kwargs: object) -> list[str]:
    return verify(ledger, view, **kwargs).violations  # type: ignore[arg-type]


def test_an_untouched_log_verifies(
    ledger: CouponLedger, view: CouponsView, env: dict[str, str], database_url: str, retailer_id: UUID
) -> None:
    history(ledger, retailer_id)
    project_to_head(env, database_url)
    assert violations(ledger, view) == []


def test_an_event_altered_after_it_was_written_is_named(
    ledger: CouponLedger, view: CouponsView, env: dict[str, str], database_url: str, retailer_id: UUID
) -> None:
    coupon = history(ledger, retailer_id)
    project_to_head(env, database_url)
    behind_the_back(
        database_url,
        (
            "UPDATE ledger_events SET state = replace(convert_from(state, 'UTF8'), '\"50.00\"', '\"5000.00\"')::bytea"
            " WHERE originator_id = %s AND originator_version = 3",
            (coupon,),
        ),
    )
    found = violations(ledger, view)
    assert found[0] == (
        f"coupon TAMPER ({coupon}): event 3 (Coupon.Redeemed) does not match its hash: its content"
        " was altered after it was written"
    )


def test_two_swapped_events_are_named(
    ledger: CouponLedger, view: CouponsView, env: dict[str, str], database_url: str, retailer_id: UUID
) -> None:
    coupon = history(ledger, retailer_id)
    project_to_head(env, database_url)
    # Versions 3 and 4 (two redemptions) trade places, hashes and all.
    behind_the_back(
        database_url,
        (
            "UPDATE ledger_events SET originator_version = -originator_version"
            " WHERE originator_id = %s AND originator_version IN (3, 4)",
            (coupon,),
        ),
        (
            "UPDATE ledger_events SET originator_version = 7 + originator_version"
            " WHERE originator_id = %s AND originator_version IN (-3, -4)",
            (coupon,),
        ),
    )
    found = violations(ledger, view)
    assert f"coupon TAMPER ({coupon}): event 3 does not follow the chain: its prev_hash is not the hash of" in " ".join(
        found
    )
    assert all("TAMPER" in message for message in found)
    assert any("event 5 does not follow the chain" in message for message in found)


def test_a_stream_cut_short_is_named_and_no_longer_extends_a_digest_saved_before(
    ledger: CouponLedger,
    view: CouponsView,
    env: dict[str, str],
    database_url: str,
    retailer_id: UUID,
    tmp_path: Path,
) -> None:
    coupon = history(ledger, retailer_id)
    project_to_head(env, database_url)
    digest_file = save_digest(ledger, database_url, retailer_id, tmp_path)
    assert run_cli(database_url, "verify", "--digest", str(digest_file)).returncode == 0

    behind_the_back(
        database_url, ("DELETE FROM ledger_events WHERE originator_id = %s AND originator_version >= 5", (coupon,))
    )
    found = violations(ledger, view)
    assert f"coupon TAMPER ({coupon}): the log ends at version 4, but version 6 was recorded" in " ".join(found)

    result = run_cli(database_url, "verify", "--digest", str(digest_file))
    assert result.returncode == 1, result.stdout
    assert "the log no longer yields the digest's root" in result.stdout
    assert "coupon TAMPER" in result.stdout


@pytest.mark.parametrize("forged", ["root", "signature", "position"])
def test_a_digest_with_a_forged_field_is_refused(
    ledger: CouponLedger,
    env: dict[str, str],
    database_url: str,
    retailer_id: UUID,
    tmp_path: Path,
    forged: str,
) -> None:
    history(ledger, retailer_id)
    project_to_head(env, database_url)
    digest_file = save_digest(ledger, database_url, retailer_id, tmp_path)
    digest = json.loads(digest_file.read_text())
    if forged == "position":
        digest["position"] -= 1
    else:
        digest[forged] = ("0" if digest[forged][0] != "0" else "1") + digest[forged][1:]
    digest_file.write_text(json.dumps(digest))
    result = run_cli(database_url, "verify", "--digest", str(digest_file))
    assert result.returncode == 1, result.stdout
    assert "the digest's signature is not valid" in result.stdout


def save_digest(ledger: CouponLedger, url: str, retailer_id: UUID, folder: Path) -> Path:
    """What GET /v1/audit/digest answers, saved by an auditor."""
    assert isinstance(ledger.recorder, LedgerRecorder)
    audit = AuditLog(ledger.recorder)
    tree = audit.tree(retailer_id, audit.position())
    signer = DigestSigner.stored(url)
    if signer is None:
        from psycopg_pool import ConnectionPool

        with ConnectionPool(url, open=True) as pool:
            signer = DigestSigner.load_or_create(pool)
    body = {
        "retailer_id": str(retailer_id),
        "position": tree.position,
        "events": tree.events,
        "streams": tree.streams,
        "root": tree.root,
        "issued_at": format_timestamp(ledger.clock()),
    }
    path = folder / "digest.json"
    path.write_text(json.dumps(signer.sign(body)))
    return path
