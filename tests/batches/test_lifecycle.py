"""``portal.batches.lifecycle`` is the only writer of a batch item's life: the items'
rows (status, lease, failure columns), the batch counters, the tasks' batch lock and
the attempt rows.

Two checks. While the batch scenarios below run (successes, failures, ignored and
import-failed items, retries up to the limit, lost runs and expired leases, recovery,
pause and cancel, a correction), SQLAlchemy events record which module issued each
write of those: an UPDATE or INSERT (``before_execute``), or an attribute set on a
mapped object that a later flush writes (``set``). And a reading of the source finds
no statement or assignment that writes them outside lifecycle.
"""
import ast
import pathlib
import sys
from datetime import timedelta

import pytest
from sqlalchemy import event, inspect
from sqlalchemy.sql.dml import UpdateBase
from sqlalchemy.sql.elements import BindParameter, Null, TextClause

from support import GOOD_FORM, assert_counters_match_items
from portal.batches import control, corrections, creation, recovery, runner
from portal.infra.extensions import db
from portal.models import Batch, BatchItem, BatchItemAttempt, Task
from portal.models.base import utcnow
from portal.workflow import engine

LIFECYCLE = "portal.batches.lifecycle"
COUNTERS = {"total", "pending", "running", "success", "failed", "ignored", "cancelled"}
TASK_LOCK = {"lock_holder_id", "lock_batch_id", "lock_expires_at"}
ITEM_TABLES = {"batch_item", "batch_item_attempt"}
# Frames between the code that writes and these listeners.
TRANSPARENT = ("sqlalchemy.", "flask_sqlalchemy.", "contextlib", __name__)
PORTAL = pathlib.Path(__file__).resolve().parents[2] / "portal"


# --- who writes: the recorder --------------------------------------------------------

def _writer():
    """The module whose code issued the write being recorded."""
    frame = sys._getframe(1)
    while frame is not None:
        module = frame.f_globals.get("__name__") or ""
        if not module.startswith(TRANSPARENT) and not module.startswith("<"):
            return module
        frame = frame.f_back
    return ""


def _in_flush():
    """Whether a statement comes from a flush: it writes what attribute sets were recorded
    for already, by the code that set them (the flush runs where the caller commits)."""
    frame = sys._getframe(1)
    while frame is not None:
        if (frame.f_code.co_name == "_flush"
                and frame.f_globals.get("__name__") == "sqlalchemy.orm.session"):
            return True
        frame = frame.f_back
    return False


def _name(key):
    return getattr(key, "key", None) or getattr(key, "name", None) or str(key)


def _clears(value):
    """Whether a value written to a lock column empties it."""
    if isinstance(value, BindParameter):
        return value.value is None and not value.required
    return value is None or isinstance(value, Null)


class Writes:
    """The writes of item-lifecycle state seen while a test runs: (module, table, columns)."""

    def __init__(self):
        self.seen = []

    def record(self, module, table, columns, *, takes_a_task=False):
        if not module.startswith("portal."):
            return  # a test arranging its own data
        columns = set(columns)
        guarded = (table in ITEM_TABLES or (table == "batch" and columns & COUNTERS)
                   or (table == "task" and columns & TASK_LOCK
                       and (module.startswith("portal.batches") or takes_a_task)))
        if guarded:
            self.seen.append((module, table, tuple(sorted(columns))))

    def elsewhere(self):
        return sorted({write for write in self.seen if write[0] != LIFECYCLE})

    def tables(self):
        return {table for module, table, _columns in self.seen if module == LIFECYCLE}

    # SQLAlchemy's events

    def before_execute(self, conn, statement, multiparams, params, execution_options):
        if _in_flush():
            return
        if isinstance(statement, TextClause):
            text = " ".join(statement.text.lower().split())
            for table in ITEM_TABLES | {"batch", "task"}:
                if f"update {table} " in text or f"insert into {table} " in text:
                    self.record(_writer(), table, COUNTERS | TASK_LOCK)
            return
        if not isinstance(statement, UpdateBase):
            return
        values = dict(statement._values or {})
        columns = {_name(key) for key in values}
        for group in (multiparams or [params or {}]):
            for group_params in (group if isinstance(group, list) else [group]):
                columns |= set(group_params or {})
        takes = any(_name(key) == "lock_batch_id" and not _clears(value)
                    for key, value in values.items())
        self.record(_writer(), statement.table.name, columns, takes_a_task=takes)

    def attribute_set(self, table, column):
        def on_set(target, value, oldvalue, initiator):
            self.record(_writer(), table, {column},
                        takes_a_task=column == "lock_batch_id" and value is not None)
        return on_set


def _watched_attributes():
    for model in (BatchItem, BatchItemAttempt):
        for attribute in inspect(model).column_attrs:
            yield model, attribute.key
    yield from ((Batch, name) for name in sorted(COUNTERS))
    yield from ((Task, name) for name in sorted(TASK_LOCK))


@pytest.fixture
def writes(app):
    recorder = Writes()
    listeners = [(db.engine, "before_execute", recorder.before_execute)]
    listeners += [(getattr(model, name), "set", recorder.attribute_set(model.__tablename__, name))
                  for model, name in _watched_attributes()]
    for target, name, listener in listeners:
        event.listen(target, name, listener)
    try:
        yield recorder
    finally:
        for target, name, listener in listeners:
            event.remove(target, name, listener)


def _statuses(batch_id):
    db.session.rollback()
    return sorted(db.session.execute(
        db.select(BatchItem.status).where(BatchItem.batch_id == batch_id)).scalars())


def _item(batch_id, task_id):
    db.session.rollback()
    return db.session.execute(db.select(BatchItem).where(
        BatchItem.batch_id == batch_id, BatchItem.task_id == task_id)).scalar_one()


def _fail_approval_of(monkeypatch, task_id, times):
    """The approval of ``task_id`` raises an unexpected error ``times`` times."""
    real_decide, raised = runner.decide, []

    def flaky_decide(this_task_id, *args, **kwargs):
        if this_task_id == task_id and len(raised) < times:
            raised.append(this_task_id)
            raise RuntimeError("something nobody expected")
        return real_decide(this_task_id, *args, **kwargs)

    monkeypatch.setattr(runner, "decide", flaky_decide)


# --- the scenarios -------------------------------------------------------------------

def test_creating_running_and_correcting_a_batch_writes_only_through_lifecycle(writes, factory):
    users = factory.standard()
    tasks = factory.tasks(5, starter=users["admin"])
    rows = {tasks[0].id: {"decision": {"action": "approve", "form": {"amount": "x"}}},
            tasks[1].id: {"decision": {"action": "approve", "form": GOOD_FORM}},
            tasks[2].id: {"decision": {"action": "approve", "form": GOOD_FORM}},
            tasks[3].id: {"field_errors": {"amount": "Enter a number."}, "source_ref": "5"},
            tasks[4].id: {"decision": {"action": "approve", "form": GOOD_FORM}}}
    batch = creation.create_batch(users["alice"], tasks[0].node, mode="single", rows=rows,
                                  task_ids=[*rows, tasks[1].id, 999999])
    db.session.commit()
    engine.set_suspended(tasks[2].instance_id, users["admin"], True)
    db.session.commit()
    runner.run_inline(batch.id)
    assert _statuses(batch.id) == ["failed", "ignored", "ignored", "ignored", "import_failed",
                                   "success", "success"]   # suspended, duplicate, unknown id

    batch = db.session.get(Batch, batch.id)
    corrections.correct(batch, users["alice"], _item(batch.id, tasks[0].id).id, "approve", None,
                        GOOD_FORM)
    db.session.commit()
    runner.run_inline(batch.id)
    assert _item(batch.id, tasks[0].id).status == "success"
    assert_counters_match_items(batch.id)
    assert writes.elsewhere() == []
    assert writes.tables() == {"batch_item", "batch_item_attempt", "batch", "task"}


def test_retries_up_to_the_limit_write_only_through_lifecycle(writes, factory, app):
    users = factory.standard()
    batch = factory.batch(users["alice"], factory.tasks(2, starter=users["admin"]))
    users["alice"].disabled = True  # every run fails with a user error
    db.session.commit()
    runner.run_inline(batch.id)
    for _round in range(app.config["BATCH_RETRY_LIMIT"] + 1):
        control.retry(batch, users["sam"])
        db.session.commit()
        runner.run_inline(batch.id)
    ends = db.session.execute(db.select(BatchItem.status, BatchItem.retry_count)
                              .where(BatchItem.batch_id == batch.id)).all()
    assert set(ends) == {("failed", app.config["BATCH_RETRY_LIMIT"])}
    assert_counters_match_items(batch.id)
    assert writes.elsewhere() == []
    assert writes.tables() == {"batch_item", "batch_item_attempt", "batch", "task"}


def test_lost_runs_and_recovery_write_only_through_lifecycle(writes, factory, app, monkeypatch):
    users = factory.standard()
    tasks = factory.tasks(3, starter=users["admin"])
    batch = factory.batch(users["alice"], tasks, concurrency=1)
    limit = app.config["BATCH_RETRY_LIMIT"]
    _fail_approval_of(monkeypatch, tasks[0].id, times=limit)
    claim = runner.claim_next(batch.id)                 # a worker takes the first item...
    later = utcnow() + timedelta(seconds=app.config["BATCH_LEASE_SECONDS"] + 1)
    assert recovery.recover(later)["reclaimed"] == 1    # ...and vanishes: its lease expires
    assert runner.run_claimed_item(claim) is None      # it comes back: refused
    for _round in range(limit):                         # then its approval raises, each run
        db.session.execute(db.update(BatchItem).where(BatchItem.batch_id == batch.id)
                           .values(next_attempt_at=None))   # no waiting out the backoff
        db.session.commit()
        runner.run_inline(batch.id)
    item = _item(batch.id, tasks[0].id)
    assert (item.status, item.error_kind, item.retry_count) == ("failed", "unexpected", limit)
    monkeypatch.setitem(app.config, "BATCH_RETRY_LIMIT", limit + 1)  # raised: retried again
    assert recovery.recover()["retried"] == 1
    assert _item(batch.id, tasks[0].id).status == "pending"
    assert_counters_match_items(batch.id)
    assert writes.elsewhere() == []
    assert writes.tables() == {"batch_item", "batch_item_attempt", "batch", "task"}


def test_pausing_and_cancelling_write_only_through_lifecycle(writes, factory):
    users = factory.standard()
    batch = factory.batch(users["alice"], factory.tasks(4, starter=users["admin"]))
    claim = runner.claim_next(batch.id)
    control.pause(batch, users["alice"])
    db.session.commit()
    control.resume(batch, users["alice"])
    db.session.commit()
    control.cancel(batch, users["alice"])
    db.session.commit()
    runner.run_claimed_item(claim)               # the running item finishes
    assert _statuses(batch.id) == ["cancelled", "cancelled", "cancelled", "success"]
    assert_counters_match_items(batch.id)
    assert writes.elsewhere() == []
    assert writes.tables() == {"batch_item", "batch_item_attempt", "batch", "task"}


# --- the source ----------------------------------------------------------------------

# Assigned only by lifecycle, anywhere in portal/ (names no other table uses).
ITEM_COLUMNS = {"error_kind", "error_code", "error_detail", "field_errors", "lease_token",
                "lease_expires_at", "retry_count"}
WRITERS = {"update", "insert", "delete"}
BATCH_MODELS = {"Batch", "BatchItem", "BatchItemAttempt"}
OWNERS = {"portal/batches/lifecycle.py", "portal/batches/item_sql.py"}


def _assigned_attributes(target):
    """The attribute names an assignment target writes (``item.a, item.b = ...``)."""
    if isinstance(target, (ast.Tuple, ast.List)):
        for element in target.elts:
            yield from _assigned_attributes(element)
    elif isinstance(target, ast.Attribute):
        yield target.attr


def _called_name(call):
    func = call.func
    return func.id if isinstance(func, ast.Name) else getattr(func, "attr", None)


def _model_of(node):
    """The model a statement is built on: ``Batch``, or ``Batch.__table__``."""
    if isinstance(node, ast.Attribute) and node.attr == "__table__":
        node = node.value
    return node.id if isinstance(node, ast.Name) else None


def lifecycle_writes_outside(root=PORTAL):
    """[(file:line, what)] of the source that writes item-lifecycle state outside lifecycle."""
    found = []
    for path in sorted(root.rglob("*.py")):
        relative = path.relative_to(root.parent).as_posix()
        if relative in OWNERS:
            continue
        in_batches = relative.startswith("portal/batches/")
        for node in ast.walk(ast.parse(path.read_text(), relative)):
            where = f"{relative}:{getattr(node, 'lineno', 0)}"
            if isinstance(node, (ast.Assign, ast.AugAssign, ast.AnnAssign)):
                targets = node.targets if isinstance(node, ast.Assign) else [node.target]
                values = (node.value.elts if isinstance(node.value, ast.Tuple) else [node.value]
                          ) if node.value is not None else []
                for target in targets:
                    for name in _assigned_attributes(target):
                        guarded = ITEM_COLUMNS | ((COUNTERS | TASK_LOCK) if in_batches else set())
                        takes = name == "lock_batch_id" and not all(
                            isinstance(v, ast.Constant) and v.value is None for v in values)
                        if name in guarded or takes:
                            found.append((where, f"assigns {name}"))
            elif isinstance(node, ast.Call):
                called = _called_name(node)
                if called == "BatchItemAttempt":
                    found.append((where, "makes an attempt row"))
                elif called == "setattr" and len(node.args) > 1 and isinstance(
                        node.args[1], ast.Constant) and node.args[1].value in (
                        ITEM_COLUMNS | COUNTERS | TASK_LOCK):
                    found.append((where, f"sets {node.args[1].value}"))
                elif called in WRITERS and node.args:
                    model = _model_of(node.args[0])
                    if model in BATCH_MODELS or (in_batches and model == "Task"):
                        found.append((where, f"{called}({model})"))
            elif isinstance(node, (ast.Import, ast.ImportFrom)):
                names = [alias.name for alias in node.names]
                module = getattr(node, "module", None) or ""
                if "item_sql" in names or module.endswith("item_sql") or any(
                        name.endswith(".item_sql") for name in names):
                    found.append((where, "imports item_sql"))
    return found


def test_no_module_but_lifecycle_writes_item_lifecycle_state():
    assert lifecycle_writes_outside() == []


def test_the_source_check_finds_such_a_write(tmp_path):
    """The reading above can fail: each kind of write it looks for, put in a module of
    the batch package, is found."""
    package = tmp_path / "portal" / "batches"
    package.mkdir(parents=True)
    (package / "control.py").write_text(
        "from portal.batches import item_sql\n"
        "def cancel(batch, item, now):\n"
        "    item.status, item.error_kind = 'cancelled', 'cancelled'\n"
        "    batch.pending -= 1\n"
        "    db.session.execute(update(BatchItem).values(status='cancelled'))\n"
        "    db.session.add(BatchItemAttempt(item_id=item.id))\n"
        "    setattr(batch, 'cancelled', 1)\n"
        "    task.lock_batch_id = batch.id\n")
    found = lifecycle_writes_outside(tmp_path / "portal")
    assert sorted(what for _where, what in found) == sorted([
        "imports item_sql", "assigns error_kind", "assigns pending", "update(BatchItem)",
        "makes an attempt row", "sets cancelled", "assigns lock_batch_id"])
    assert {where for where, _what in found} == {f"portal/batches/control.py:{line}"
                                                 for line in range(1, 9) if line != 2}
