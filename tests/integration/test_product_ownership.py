"""Products and orders belong to a retailer: schema.sql adds `retailer_id` to databases that
already hold rows (an owner only where it is certain, else the row stays invisible), every start
applies it again harmlessly, and `serve`'s demo products belong to the demo retailer."""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal
from typing import Any
from uuid import UUID, uuid4

import psycopg
import pytest
from psycopg.conninfo import make_conninfo
from psycopg_pool import ConnectionPool

from api.commands.serve import create_demo_retailer
from api.database import apply_schema, eventsourcing_env, open_ledger
from api.shop.errors import ShopError
from api.shop.orders import Checkout
from api.shop.stock import DEMO_PRODUCTS

# The tables as they were before products and orders had an owner.
BEFORE = """
CREATE TABLE retailers (id uuid PRIMARY KEY, name text NOT NULL, created_at timestamptz NOT NULL DEFAULT now());
CREATE TABLE products (
    id bigserial PRIMARY KEY, name text NOT NULL,
    price numeric(14, 2) NOT NULL CHECK (price >= 0), stock integer NOT NULL CHECK (stock >= 0)
);
CREATE TABLE orders (
    id bigserial PRIMARY KEY, user_id bigint NOT NULL, subtotal numeric(14, 2) NOT NULL,
    total numeric(14, 2) NOT NULL, created_at timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE order_coupons (
    order_id bigint PRIMARY KEY REFERENCES orders (id), retailer_id uuid NOT NULL, coupon_code text NOT NULL,
    redemption_id uuid NOT NULL, discount_amount numeric(14, 2) NOT NULL
);
"""


@pytest.fixture
def old_database(server_url: str) -> Iterator[str]:
    """A database with the tables as they were, schema.sql not yet applied."""
    name = f"old_{uuid4().hex[:16]}"
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = make_conninfo(server_url, dbname=name)
    with psycopg.connect(url) as conn:
        conn.execute(BEFORE)
    try:
        yield url
    finally:
        with psycopg.connect(server_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def run(url: str, query: str, *params: Any) -> list[tuple[Any, ...]]:
    with psycopg.connect(url, autocommit=True) as conn:
        cur = conn.execute(query, params)
        return cur.fetchall() if cur.description else []


def add_retailer(url: str, name: str) -> UUID:
    retailer_id = uuid4()
    run(url, "INSERT INTO retailers (id, name) VALUES (%s, %s)", retailer_id, name)
    return retailer_id


def add_rows(url: str) -> dict[str, int]:
    """Two products and two orders, without an owner (as they were)."""
    ids = {}
    for name in ("tote", "mug"):
        ids[name] = run(url, "INSERT INTO products (name, price, stock) VALUES (%s, 5, 10) RETURNING id", name)[0][0]
    for name in ("plain", "with_coupon"):
        ids[name] = run(url, "INSERT INTO orders (user_id, subtotal, total) VALUES (1, 5, 5) RETURNING id")[0][0]
    return ids


def owners(url: str, table: str) -> list[tuple[Any, ...]]:
    return run(url, f"SELECT id, retailer_id FROM {table} ORDER BY id")


def not_null(url: str, table: str) -> bool:
    query = "SELECT attnotnull FROM pg_attribute WHERE attrelid = %s::regclass AND attname = 'retailer_id'"
    return bool(run(url, query, table)[0][0])


def test_on_a_new_database_every_product_and_order_must_have_an_owner(database_url: str) -> None:
    assert not_null(database_url, "products")
    assert not_null(database_url, "orders")
    with pytest.raises(psycopg.errors.NotNullViolation):
        run(database_url, "INSERT INTO products (name, price, stock) VALUES ('x', 1, 1)")
    with pytest.raises(psycopg.errors.ForeignKeyViolation):
        run(database_url, "INSERT INTO products (retailer_id, name, price, stock) VALUES (%s, 'x', 1, 1)", uuid4())
    indexes = run(database_url, "SELECT indexname FROM pg_indexes WHERE tablename IN ('products', 'orders')")
    assert {"products_retailer_id_id", "orders_retailer_id_id"} <= {name for (name,) in indexes}


def test_with_exactly_one_retailer_its_existing_rows_become_its_own(old_database: str) -> None:
    only = add_retailer(old_database, "demo")
    ids = add_rows(old_database)
    apply_schema(old_database)
    assert owners(old_database, "products") == [(ids["tote"], only), (ids["mug"], only)]
    assert owners(old_database, "orders") == [(ids["plain"], only), (ids["with_coupon"], only)]
    assert not_null(old_database, "products") and not_null(old_database, "orders")
    apply_schema(old_database)  # every start applies it again
    assert owners(old_database, "products") == [(ids["tote"], only), (ids["mug"], only)]


def test_with_several_retailers_only_certain_owners_are_set_and_the_rest_is_invisible(old_database: str) -> None:
    first = add_retailer(old_database, "demo")
    second = add_retailer(old_database, "shop-b")
    ids = add_rows(old_database)
    run(
        old_database,
        "INSERT INTO order_coupons VALUES (%s, %s, 'SAVE10', %s, 1)",
        ids["with_coupon"],
        second,
        uuid4(),
    )
    apply_schema(old_database)
    apply_schema(old_database)

    # The coupon names the order's retailer; nothing else is certain, so nothing else is guessed.
    assert owners(old_database, "orders") == [(ids["plain"], None), (ids["with_coupon"], second)]
    assert owners(old_database, "products") == [(ids["tote"], None), (ids["mug"], None)]
    assert not not_null(old_database, "products")
    # While old rows lack an owner, a new or changed row still needs one.
    with pytest.raises(psycopg.errors.CheckViolation):
        run(old_database, "INSERT INTO products (name, price, stock) VALUES ('x', 1, 1)")
    with pytest.raises(psycopg.errors.CheckViolation):
        run(old_database, "INSERT INTO orders (user_id, subtotal, total) VALUES (1, 1, 1)")

    # Invisible to every retailer: not listed, not sellable, stock untouched.
    with ConnectionPool(old_database, min_size=1, max_size=2, kwargs={"autocommit": True}) as pool:
        ledger = open_ledger(eventsourcing_env(old_database, pool_size=1, max_overflow=0))
        try:
            checkout = Checkout(pool, ledger)
            for retailer_id in (first, second):
                assert checkout.list_products(retailer_id) == []
                with pytest.raises(ShopError) as error:
                    checkout.place_order(retailer_id, 1, [(ids["tote"], 1)], None)
                assert error.value.code == "NOT_FOUND"
        finally:
            ledger.close()
    assert run(old_database, "SELECT stock FROM products WHERE id = %s", ids["tote"]) == [(10,)]

    # A retailer created later is not handed the orphans; an operator assigns them, and the next
    # start makes the column NOT NULL.
    run(old_database, "DELETE FROM retailers WHERE id = %s", first)
    apply_schema(old_database)
    assert owners(old_database, "products") == [(ids["tote"], None), (ids["mug"], None)]
    run(old_database, "UPDATE products SET retailer_id = %s", second)
    run(old_database, "UPDATE orders SET retailer_id = %s WHERE retailer_id IS NULL", second)
    apply_schema(old_database)
    assert not_null(old_database, "products") and not_null(old_database, "orders")


def test_applying_the_schema_again_waits_for_no_checkout(database_url: str) -> None:
    """Every start applies schema.sql; on a migrated database it takes no lock on products,
    orders or order_coupons, so a start never queues behind (or in front of) checkouts."""
    retailer_id = add_retailer(database_url, "busy")
    with psycopg.connect(database_url) as busy:  # a checkout in progress: rows locked and written
        busy.execute("SELECT * FROM products FOR UPDATE")
        busy.execute("INSERT INTO products (retailer_id, name, price, stock) VALUES (%s, 'x', 1, 1)", (retailer_id,))
        busy.execute("INSERT INTO orders (retailer_id, user_id, subtotal, total) VALUES (%s, 1, 1, 1)", (retailer_id,))
        busy.execute("SELECT * FROM order_coupons FOR UPDATE")
        apply_schema(make_conninfo(database_url, options="-c lock_timeout=2s"))
        busy.rollback()


def test_an_order_coupon_row_must_name_its_orders_retailer(database_url: str) -> None:
    mine = add_retailer(database_url, "mine")
    theirs = add_retailer(database_url, "theirs")
    (order_id,) = run(
        database_url,
        "INSERT INTO orders (retailer_id, user_id, subtotal, total) VALUES (%s, 1, 5, 5) RETURNING id",
        mine,
    )[0]
    with pytest.raises(psycopg.errors.ForeignKeyViolation):
        run(database_url, "INSERT INTO order_coupons VALUES (%s, %s, 'SAVE10', %s, 1)", order_id, theirs, uuid4())
    run(database_url, "INSERT INTO order_coupons VALUES (%s, %s, 'SAVE10', %s, 1)", order_id, mine, uuid4())


def test_the_demo_products_belong_to_the_demo_retailer(database_url: str) -> None:
    created = create_demo_retailer(database_url)
    assert created is not None
    demo_id = created.retailer_id
    assert run(database_url, "SELECT name FROM retailers WHERE id = %s", demo_id) == [("demo",)]
    listed = run(database_url, "SELECT retailer_id, name, price, stock FROM products ORDER BY id")
    assert listed == [(demo_id, name, price, stock) for name, price, stock in DEMO_PRODUCTS]
    assert all(isinstance(price, Decimal) for _, _, price, _ in listed)
    assert create_demo_retailer(database_url) is None  # only on a store without retailers
    assert len(run(database_url, "SELECT id FROM products")) == len(DEMO_PRODUCTS)
