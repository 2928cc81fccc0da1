"""Fresh, empty copies of live tables in a scratch schema, and their swap in for the live ones.

`create_copies` makes, for each live table, a table of the same name in the scratch schema:
`CREATE TABLE … (LIKE … INCLUDING ALL)` (columns, defaults, NOT NULL and CHECK constraints,
identity, generated columns, indexes, comments, storage), its indexes then renamed to the live
ones' names (LIKE makes up its own), and the live table's foreign keys added (LIKE leaves them
out), each referring to the scratch copy of a table that has one, else to the live table.

`swap_in`, in the caller's (short) transaction: locks the live tables, drops them and moves the
copies into their schema, so a reader sees either the old tables or the new ones, whole. Names are
looked up again by every statement (a prepared statement is re-planned once the tables it read
change), so live processes carry on with the new tables. A sequence a live column owns (serial)
goes on to the new column. A foreign key from another table, a view or a function on a live table
makes PostgreSQL refuse the drop: the transaction fails and nothing is swapped.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from typing import Any, NamedTuple

from psycopg import Cursor
from psycopg.sql import SQL, Identifier, Literal

TABLE_OID = """
SELECT c.oid FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = %s AND c.relname = %s AND c.relkind IN ('r', 'p')
"""
INDEXES = f"""
SELECT c.relname AS name, i.indisprimary AS is_primary, i.indisunique AS is_unique,
       pg_get_indexdef(i.indexrelid) AS definition
FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
WHERE i.indrelid = ({TABLE_OID})
ORDER BY c.relname
"""
FOREIGN_KEYS = f"""
SELECT conname AS name, pg_get_constraintdef(oid) AS definition FROM pg_constraint
WHERE conrelid = ({TABLE_OID}) AND contype = 'f'
ORDER BY conname
"""
OWNED_SEQUENCES = f"""
SELECT sn.nspname AS schema, s.relname AS name, a.attname AS column_name
FROM pg_depend d
JOIN pg_class s ON s.oid = d.objid AND s.relkind = 'S'
JOIN pg_namespace sn ON sn.oid = s.relnamespace
JOIN pg_attribute a ON a.attrelid = d.refobjid AND a.attnum = d.refobjsubid
WHERE d.classid = 'pg_class'::regclass AND d.refclassid = 'pg_class'::regclass
  AND d.deptype = 'a' AND d.refobjid = ({TABLE_OID})
ORDER BY s.relname
"""


class OwnedSequence(NamedTuple):
    schema: str
    name: str
    table: str
    column_name: str


def drop_copies(curs: Cursor[Any], scratch: str) -> None:
    """Drop the scratch schema and whatever is in it (only the copies this module made)."""
    curs.execute(SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(Identifier(scratch)))


def create_copies(curs: Cursor[Any], schema: str, tables: Sequence[str], scratch: str) -> None:
    """Empty copies of ``schema``'s ``tables`` in the schema ``scratch`` (made anew), in the
    caller's transaction. ``tables`` in the order their rows may be written (a table before
    those whose foreign keys refer to it)."""
    drop_copies(curs, scratch)
    curs.execute(SQL("CREATE SCHEMA {}").format(Identifier(scratch)))
    for table in tables:
        if curs.execute(TABLE_OID, (schema, table)).fetchone() is None:
            raise LookupError(f"table {schema}.{table} does not exist: apply schema.sql first")
        curs.execute(
            SQL("CREATE TABLE {} (LIKE {} INCLUDING ALL)").format(Identifier(scratch, table), Identifier(schema, table))
        )
        name_indexes_as_live(curs, schema, scratch, table)
    for table in tables:
        add_foreign_keys(curs, schema, scratch, table)


def index_key(row: dict[str, Any]) -> tuple[bool, bool, str]:
    """What an index is, whatever its name and table: kind, method, columns, predicate."""
    return row["is_primary"], row["is_unique"], row["definition"].split(" USING ", 1)[1]


def name_indexes_as_live(curs: Cursor[Any], schema: str, scratch: str, table: str) -> None:
    """Give each index of the scratch copy the name of the live index it copies (an index that
    backs a constraint takes the constraint along), so both are named as before once swapped in."""
    live: dict[tuple[bool, bool, str], list[str]] = defaultdict(list)
    for row in curs.execute(INDEXES, (schema, table)).fetchall():
        live[index_key(row)].append(row["name"])
    renames = []
    for row in curs.execute(INDEXES, (scratch, table)).fetchall():
        names = live.get(index_key(row))
        if names:
            renames.append((row["name"], names.pop(0)))
    # Through names of our own first: a made-up name may be another index's live name.
    for n, (made_up, _) in enumerate(renames):
        curs.execute(
            SQL("ALTER INDEX {} RENAME TO {}").format(Identifier(scratch, made_up), Identifier(f"rebuild_index_{n}"))
        )
    for n, (_, name) in enumerate(renames):
        curs.execute(
            SQL("ALTER INDEX {} RENAME TO {}").format(Identifier(scratch, f"rebuild_index_{n}"), Identifier(name))
        )


def add_foreign_keys(curs: Cursor[Any], schema: str, scratch: str, table: str) -> None:
    """The live table's foreign keys on its copy. Each definition is read with only the live schema
    on the search path (so its tables are named unqualified there) and added with the scratch
    schema first: a referred table that has a copy is the copy."""
    row = curs.execute("SELECT current_setting('search_path') AS path").fetchone()
    assert row is not None
    curs.execute(SQL("SET LOCAL search_path TO {}").format(Identifier(schema)))
    keys = curs.execute(FOREIGN_KEYS, (schema, table)).fetchall()
    curs.execute(SQL("SET LOCAL search_path TO {}, {}").format(Identifier(scratch), Identifier(schema)))
    for key in keys:
        curs.execute(
            SQL("ALTER TABLE {} ADD CONSTRAINT {} {}").format(
                Identifier(scratch, table), Identifier(key["name"]), SQL(key["definition"])
            )
        )
    curs.execute("SELECT set_config('search_path', %s, true)", (row["path"],))


def owned_sequences(curs: Cursor[Any], schema: str, tables: Sequence[str]) -> list[OwnedSequence]:
    found = []
    for table in tables:
        for row in curs.execute(OWNED_SEQUENCES, (schema, table)).fetchall():
            found.append(OwnedSequence(row["schema"], row["name"], table, row["column_name"]))
    return found


def swap_in(curs: Cursor[Any], schema: str, tables: Sequence[str], scratch: str, lock_timeout: str) -> None:
    """In the caller's transaction: the scratch copies take the live tables' place. Waits at most
    ``lock_timeout`` (a PostgreSQL interval) for the readers of the live tables."""
    curs.execute(SQL("SET LOCAL lock_timeout = {}").format(Literal(lock_timeout)))
    live = SQL(", ").join(Identifier(schema, table) for table in tables)
    curs.execute(SQL("LOCK TABLE {} IN ACCESS EXCLUSIVE MODE").format(live))
    sequences = owned_sequences(curs, schema, tables)
    for sequence in sequences:  # kept: the new column's default draws from it
        curs.execute(SQL("ALTER SEQUENCE {} OWNED BY NONE").format(Identifier(sequence.schema, sequence.name)))
    curs.execute(SQL("DROP TABLE {}").format(live))
    for table in tables:
        curs.execute(SQL("ALTER TABLE {} SET SCHEMA {}").format(Identifier(scratch, table), Identifier(schema)))
    for sequence in sequences:
        curs.execute(
            SQL("ALTER SEQUENCE {} OWNED BY {}").format(
                Identifier(sequence.schema, sequence.name), Identifier(schema, sequence.table, sequence.column_name)
            )
        )
    curs.execute(SQL("DROP SCHEMA {}").format(Identifier(scratch)))
