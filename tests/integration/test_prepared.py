"""db.Prepared runs Core statements on the driver's own cursor, and so leans on a few of
SQLAlchemy's internals (see cdp.db): `SQLCompiler.positiontup` and `binds` for the order
of the parameters, `BindParameter.required` and `value` for the statement's own
constants, `visitors.replacement_traverse` for the tables a build hands a projector, and
`Pool._invalidate` for a connection found dead. These tests pin each one, so that an
upgrade of SQLAlchemy that changes them fails here, by name, not somewhere downstream."""

import inspect
from typing import Any

from sqlalchemy import Engine, Table, bindparam, func, literal, select
from sqlalchemy.pool import Pool
from sqlalchemy.sql.compiler import SQLCompiler

from cdp import db
from cdp.db import writing
from cdp.projections import builds
from cdp.projections.tables import checkpoints

SHADOW = builds.shadow(checkpoints)  # as a build makes it


def compiled(statement: Any, dialect: str) -> SQLCompiler:
    found = statement.compile(dialect=db._DIALECTS[dialect]())
    assert isinstance(found, SQLCompiler)
    return found


def test_positiontup_names_the_parameters_in_the_order_the_sql_takes_them() -> None:
    statement = select(checkpoints.c.name).where(
        checkpoints.c.position > bindparam("low"), checkpoints.c.name == bindparam("name")
    )
    for dialect in ("sqlite", "postgresql"):
        found = compiled(statement, dialect)
        assert list(found.positiontup or ()) == ["low", "name"], dialect
        assert {name: found.binds[name].required for name in ("low", "name")} == {
            "low": True,
            "name": True,
        }


def test_a_constant_of_the_statement_is_a_bind_not_required_and_holding_its_value() -> None:
    statement = select(func.coalesce(checkpoints.c.position, literal(7)).label("p")).where(
        checkpoints.c.name == bindparam("name")
    )
    for dialect in ("sqlite", "postgresql"):
        found = compiled(statement, dialect)
        binds = [found.binds[name] for name in found.positiontup or ()]
        assert [(bind.required, bind.value) for bind in binds if not bind.required] == [(False, 7)]


def test_prepared_statements_lay_out_named_values_and_constants_as_the_driver_takes_them(
    engine: Engine,
) -> None:
    insert = db.Prepared(
        checkpoints.insert().values(position=bindparam("position"), name=bindparam("name"))
    )
    read = db.Prepared(
        select(checkpoints.c.name, func.coalesce(checkpoints.c.position, literal(7)).label("p"))
        .where(checkpoints.c.position >= bindparam("low"))
        .order_by(checkpoints.c.name)
    )
    with writing(engine) as connection:
        insert.run(connection, [{"name": "b", "position": 2}, {"position": 1, "name": "a"}])
        assert read.rows(connection, {"low": 2}) == [{"name": "b", "p": 2}]
        assert read.rows(connection, {"low": 0}) == [{"name": "a", "p": 1}, {"name": "b", "p": 2}]


def test_the_tables_handed_to_a_statement_replace_the_models_in_its_sql_and_its_run(
    engine: Engine,
) -> None:
    """What a build does: the very statement, run on a shadow of the table."""
    tables = db.Tables.replacing({checkpoints: SHADOW})
    assert tables[checkpoints] is SHADOW
    assert db.LIVE[checkpoints] is checkpoints
    replaced = db._replaced(select(checkpoints.c.name), tables.instead)
    assert "checkpoints__next" in str(replaced)
    insert = db.Prepared(checkpoints.insert().values(name=bindparam("name"), position=1))
    names = db.Prepared(select(checkpoints.c.name))
    with writing(engine) as connection:
        builds.create(connection, [checkpoints])
        insert.run(connection, [{"name": "next"}], tables)
        insert.run(connection, [{"name": "live"}])
        assert names.rows(connection, tables=tables) == [{"name": "next"}]
        assert names.rows(connection) == [{"name": "live"}]
        SHADOW.drop(connection)


def test_the_pool_still_has_the_method_that_drops_a_dead_connection() -> None:
    """Called as SQLAlchemy itself calls it when a statement finds the server gone (see
    db._raised_as_sqlalchemy; test_db pins the effect on a real PostgreSQL)."""
    parameters = list(inspect.signature(Pool._invalidate).parameters)
    assert parameters[:3] == ["self", "connection", "exception"]


def test_a_shadow_table_is_a_table_of_its_own_metadata() -> None:
    assert isinstance(SHADOW, Table)
    assert SHADOW.metadata is not checkpoints.metadata
