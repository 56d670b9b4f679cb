"""Migrations move existing rows, not only empty schemas: data written under an
older revision reads the same under the newest, and downgrades give it back.
Each test migrates a scratch database of its own (SQLite file or PostgreSQL)."""
import json
import os
import uuid
from datetime import datetime

import pytest
from flask_migrate import downgrade, upgrade
from sqlalchemy import MetaData, Table, create_engine, insert, inspect, text
from sqlalchemy.engine import make_url

from portal import create_app

MIGRATIONS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                          "migrations")
BEFORE_RENAME = "a3d8c4e1f702"


@pytest.fixture
def scratch_app(tmp_path):
    """An app on an empty database of its own, dropped afterwards."""
    url = make_url(os.environ["DATABASE_URL"])
    dropped = None
    if url.get_backend_name() == "postgresql":
        name = f"portal_migration_{uuid.uuid4().hex[:8]}"
        admin = create_engine(url, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
        dropped = (admin, name)
        url = url.set(database=name)
    else:
        url = make_url("sqlite:///" + str(tmp_path / "scratch.db"))
    app = create_app({"TESTING": True, "RATELIMIT_STORAGE_URI": "memory://",
                      "SQLALCHEMY_DATABASE_URI": url.render_as_string(hide_password=False)})
    yield app
    from portal.extensions import db
    with app.app_context():
        db.engine.dispose()
    if dropped:
        admin, name = dropped
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def _rows(conn, sql):
    return [tuple(row) for row in conn.execute(text(sql))]


def _insert(conn, table_name, **values):
    """Insert a row as that revision's schema has it: required columns the test
    does not care about get a plain value of their type."""
    table = Table(table_name, MetaData(), autoload_with=conn)
    row = dict(values)
    for column in table.columns:
        if column.name in row or column.nullable or column.primary_key:
            continue
        kind = column.type.python_type if hasattr(column.type, "python_type") else str
        row[column.name] = {int: 0, str: "", bool: False, dict: {},
                            datetime: datetime(2026, 1, 1)}.get(kind, "")
    conn.execute(insert(table).values(**row))


def _json(value):
    return json.loads(value) if isinstance(value, str) else value


def test_batch_columns_keep_their_values_across_the_rename(scratch_app):
    from portal.extensions import db
    from portal.models import Batch, BatchItem
    with scratch_app.app_context():
        upgrade(directory=MIGRATIONS, revision=BEFORE_RENAME)
        with db.engine.begin() as conn:
            _insert(conn, "user", id=1, username="ann")
            _insert(conn, "process_definition", id=7, key="expense", definition={})
            _insert(conn, "node", id=3, process_id=7, key="manager", fields=[])
            _insert(conn, "batch", id=5, number="B1", app_version_id=7, node_id=3,
                    created_by_id=1, post_data={"amount": 12})
            _insert(conn, "batch_item", id=9, batch_id=5, task_id=42, status="success",
                    post_data={"action": "reject"})
        upgrade(directory=MIGRATIONS)
        with db.engine.connect() as conn:
            ((process_id, shared_form),) = _rows(conn, "SELECT process_id, shared_form FROM batch")
            ((decision,),) = _rows(conn, "SELECT decision FROM batch_item")
        assert (process_id, _json(shared_form), _json(decision)) == (
            7, {"amount": 12}, {"action": "reject"})
        keys = inspect(db.engine).get_foreign_keys("batch")
        assert {"constrained_columns": ["process_id"], "referred_table": "process_definition"} in [
            {"constrained_columns": k["constrained_columns"], "referred_table": k["referred_table"]}
            for k in keys]
        batch = db.session.get(Batch, 5)
        assert (batch.process_id, batch.shared_form) == (7, {"amount": 12})
        assert db.session.get(BatchItem, 9).decision == {"action": "reject"}
        db.session.remove()
        downgrade(directory=MIGRATIONS, revision=BEFORE_RENAME)
        with db.engine.connect() as conn:
            rows = _rows(conn, "SELECT app_version_id, post_data FROM batch")
        assert [(r[0], _json(r[1])) for r in rows] == [(7, {"amount": 12})]
