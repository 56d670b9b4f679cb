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
    from portal.infra.extensions import db
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
    from portal.infra.extensions import db
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


BEFORE_ENGINE = "d8a3c5e7f1b2"
TWO_NODES = {"key": "expense", "name": "Expense claim", "nodes": [
    {"key": "manager", "name": "Manager review", "assignee": "user:ann",
     "fields": [{"key": "amount", "label": "Amount", "type": "number", "required": True}]},
    {"key": "finance", "name": "Finance review", "assignee": "role:finance", "fields": []}]}


def test_running_instances_move_onto_the_engine_and_finish_with_the_new_code(scratch_app):
    """Rows as the release before the engine wrote them (a JSON definition, its nodes in order, one
    pending task per running instance) are upgraded, then finished by the engine."""
    from portal.infra.extensions import db
    from portal.models import Instance, Task, User
    from portal.workflow import engine
    with scratch_app.app_context():
        upgrade(directory=MIGRATIONS, revision=BEFORE_ENGINE)
        with db.engine.begin() as conn:
            _insert(conn, "user", id=1, username="ann", role="user", workflow_roles="")
            _insert(conn, "user", id=2, username="ben", role="user", workflow_roles="finance")
            _insert(conn, "process_definition", id=7, key="expense", name="Expense claim", version=1,
                    definition=TWO_NODES, digest="d")
            _insert(conn, "node", id=3, process_id=7, key="manager", name="Manager review", position=0,
                    assignee="user:ann", fields=TWO_NODES["nodes"][0]["fields"])
            _insert(conn, "node", id=4, process_id=7, key="finance", name="Finance review", position=1,
                    assignee="role:finance", fields=[])
            # 10: waiting at the first node; 11: approved there, waiting at the second; 12: finished.
            for instance_id, status in ((10, "running"), (11, "running"), (12, "approved")):
                _insert(conn, "instance", id=instance_id, process_id=7, title=f"Claim {instance_id}",
                        data={}, status=status, suspended=False, created_by_id=1)
            _insert(conn, "task", id=100, instance_id=10, node_id=3, assignee_user_id=1, status="pending")
            _insert(conn, "task", id=101, instance_id=11, node_id=3, assignee_user_id=1, status="done",
                    outcome="approve", form={"amount": 5}, completed_by_id=1)
            _insert(conn, "task", id=102, instance_id=11, node_id=4, assignee_role="finance", status="pending")
            _insert(conn, "task", id=103, instance_id=12, node_id=3, assignee_user_id=1, status="done",
                    outcome="approve", completed_by_id=1)
            _insert(conn, "task", id=104, instance_id=12, node_id=4, assignee_role="finance", status="done",
                    outcome="approve", completed_by_id=2)
        upgrade(directory=MIGRATIONS)
        with db.engine.connect() as conn:
            states = dict(_rows(conn, "SELECT id, state FROM instance"))
            engine_ids = dict(_rows(conn, "SELECT id, engine_task_id FROM task"))
            (bpmn,) = _rows(conn, "SELECT bpmn FROM process_definition")[0]
        assert states[10] and states[11] and states[12] is None
        assert engine_ids[100] and engine_ids[102] and engine_ids[101] is None
        assert 'id="manager"' in bpmn and 'id="finance"' in bpmn

        ann, ben = db.session.get(User, 1), db.session.get(User, 2)
        engine.decide(100, ann, "approve", form={"amount": 12})
        db.session.commit()
        following = db.session.execute(db.select(Task).where(Task.instance_id == 10, Task.id != 100)).scalar_one()
        assert (following.node_id, following.assignee_role, following.status) == (4, "finance", "pending")
        engine.decide(following.id, ben, "approve", form={})
        engine.decide(102, ben, "reject", form={})
        db.session.commit()
        assert db.session.get(Instance, 10).status == "approved"
        assert db.session.get(Instance, 11).status == "rejected"
        assert db.session.get(Instance, 12).status == "approved"
        db.session.remove()
        downgrade(directory=MIGRATIONS, revision=BEFORE_ENGINE)
        with db.engine.connect() as conn:
            assert _rows(conn, "SELECT id, status FROM instance ORDER BY id") == [
                (10, "approved"), (11, "rejected"), (12, "approved")]
