"""One way to run work in the background, checked on the source: every job is a declared function
under portal/jobs/, handed to RQ only by ``portal.infra.queueing.enqueue`` (never by a dotted path, never
by a direct ``Queue.enqueue``), services never import jobs, and views ask for jobs only through the
after-commit outbox. Then the outbox itself: a job asked for in a transaction is enqueued after its
commit, never after a rollback, and a Redis that is down fails nothing."""
import ast
import importlib
import pathlib

import pytest

from portal.infra import queueing
from portal.infra.extensions import db
from portal.infra.queueing import declared, declared_jobs, job_path
import portal.jobs  # noqa: F401 - declares every job
from portal.jobs.periodic import PERIODIC_JOBS, PERIODIC_PREFIX

PORTAL = pathlib.Path(portal.jobs.__file__).parents[1]
HELPER = PORTAL / "infra" / "queueing.py"
# What hands a job to RQ; only the helper calls RQ's own.
RQ_ENQUEUES = {"enqueue", "enqueue_at", "enqueue_in", "enqueue_call", "enqueue_many", "enqueue_job"}
HELPERS = {"enqueue", "enqueue_after_commit"}
# Services: the packages below the jobs (a job imports its service, never the reverse).
SERVICES = ("batches", "notices", "excel", "workflow", "models")
# The view modules, which commit and leave the enqueueing to the outbox.
VIEWS = ("web", "api", "notices/web.py")


def _modules():
    for path in sorted(PORTAL.rglob("*.py")):
        yield path, ast.parse(path.read_text(encoding="utf-8"), filename=str(path))


def _module_name(path):
    return ".".join(path.relative_to(PORTAL.parent).with_suffix("").parts).removesuffix(".__init__")


def _called_name(call):
    func = call.func
    return func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)


def _is_under(path, parts):
    relative = path.relative_to(PORTAL).as_posix()
    return any(relative == part or relative.startswith(part.rstrip("/") + "/") for part in parts)


def _names_a_function(text):
    """True when ``text`` is the dotted path of a function in the portal (what RQ would import)."""
    module_name, _, attribute = text.rpartition(".")
    try:
        module = importlib.import_module(module_name)
    except ImportError:
        return False
    return callable(getattr(module, attribute, None))


def test_no_job_is_named_by_a_dotted_path():
    found = [f"{path.relative_to(PORTAL)}:{node.lineno} {node.value}"
             for path, tree in _modules() for node in ast.walk(tree)
             if isinstance(node, ast.Constant) and isinstance(node.value, str)
             and node.value.startswith("portal.") and " " not in node.value
             and _names_a_function(node.value)]
    assert found == []


def _helper_names(tree):
    """The names this module calls the helpers by (``from portal.infra.queueing import enqueue``)."""
    return {alias.asname or alias.name for node in ast.walk(tree)
            if isinstance(node, ast.ImportFrom) and node.module == "portal.infra.queueing"
            for alias in node.names if alias.name in HELPERS}


def _calls_helper(call, helper_names):
    func = call.func
    if isinstance(func, ast.Name):
        return func.id in helper_names
    return (isinstance(func, ast.Attribute) and func.attr in HELPERS
            and isinstance(func.value, ast.Name) and func.value.id == "queueing")


def test_only_the_helper_calls_rqs_enqueue():
    found = []
    for path, tree in _modules():
        if path == HELPER:
            continue
        helper_names = _helper_names(tree)
        found += [f"{path.relative_to(PORTAL)}:{node.lineno}" for node in ast.walk(tree)
                  if isinstance(node, ast.Call) and _called_name(node) in RQ_ENQUEUES
                  and not _calls_helper(node, helper_names)]
    assert found == []


def test_every_enqueued_job_is_a_declared_function_under_portal_jobs():
    calls = 0
    for path, tree in _modules():
        if path == HELPER:
            continue
        module = importlib.import_module(_module_name(path))
        helper_names = _helper_names(tree)
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and _calls_helper(node, helper_names):
                job = eval(compile(ast.Expression(node.args[0]), str(path), "eval"), vars(module))
                assert declared(job).__module__.startswith("portal.jobs."), (path, node.lineno)
                calls += 1
    assert calls >= 5  # lanes now and later, error files, deliveries now and later
    for name, func in declared_jobs().items():
        assert func.__module__.startswith("portal.jobs."), name
        assert declared(name) is func and func.job_spec.name == name
    for job_id, func, _setting in PERIODIC_JOBS:   # the scheduler's, declared like the others
        assert job_id == PERIODIC_PREFIX + declared(func).job_spec.name


def test_services_never_import_jobs():
    found = []
    for path, tree in _modules():
        if not _is_under(path, SERVICES):
            continue
        for node in ast.walk(tree):
            names = ([alias.name for alias in node.names] if isinstance(node, ast.Import) else
                     [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            found += [f"{path.relative_to(PORTAL)}:{node.lineno}" for name in names
                      if name == "portal.jobs" or name.startswith("portal.jobs.")]
    assert found == []


def test_views_enqueue_nothing_themselves():
    """A view commits; what it asked for goes to RQ from the outbox (``*_after_commit``)."""
    found = []
    for path, tree in _modules():
        if not _is_under(path, VIEWS):
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and (
                    _called_name(node) in RQ_ENQUEUES | {"enqueue_lanes", "enqueue_lane_at",
                                                        "refresh_error_files"}
                    or (_called_name(node) == "start" and isinstance(node.func, ast.Attribute)
                        and getattr(node.func.value, "id", None) == "dispatch")):
                found.append(f"{path.relative_to(PORTAL)}:{node.lineno}")
    assert found == []


def test_a_job_name_that_was_never_declared_is_refused_before_anything_is_enqueued(app):
    with pytest.raises(LookupError):
        queueing.enqueue("no-such-job", 1)
    with pytest.raises(LookupError):
        queueing.enqueue_after_commit(job_path)
    assert db.session.info.get(queueing.SESSION_KEY) is None


# --- the outbox -------------------------------------------------------------------------------

def _waiting(app):
    return [(job.func_name, job.args) for job in queueing.get_queue().get_jobs()]


def test_a_job_asked_for_in_a_transaction_is_enqueued_after_its_commit_only(app):
    queueing.get_queue().empty()
    queueing.enqueue_after_commit("error-file", 7)
    db.session.flush()
    assert _waiting(app) == []                       # not before the commit
    db.session.commit()
    assert _waiting(app) == [("portal.jobs.excel_jobs.build_error_file", (7,))]
    db.session.commit()                              # a later commit enqueues nothing again
    assert len(_waiting(app)) == 1


def test_a_rollback_forgets_the_jobs_of_its_transaction(app):
    queueing.get_queue().empty()
    queueing.enqueue_after_commit("error-file", 7)
    db.session.rollback()
    db.session.commit()
    assert _waiting(app) == []


def test_a_savepoint_released_does_not_enqueue_before_the_commit(app):
    queueing.get_queue().empty()
    with db.session.begin_nested():
        queueing.enqueue_after_commit("error-file", 8)
    assert _waiting(app) == []
    db.session.commit()
    assert _waiting(app) == [("portal.jobs.excel_jobs.build_error_file", (8,))]


def test_redis_down_at_the_commit_fails_nothing(app, monkeypatch, caplog):
    def redis_down(*_args, **_kwargs):
        raise ConnectionError("Redis is down")

    monkeypatch.setattr(queueing, "get_queue", redis_down)
    queueing.enqueue_after_commit("batch-lane", 9)
    db.session.commit()                               # no error: the database keeps the work
    assert "could not enqueue batch-lane(9,); recovery restarts the batch" in caplog.text
    assert queueing.enqueue("batch-lane", 9) is False


def test_a_batch_created_while_redis_is_down_is_started_by_recovery(app, api, factory, users,
                                                                    monkeypatch):
    from datetime import timedelta

    from support import GOOD_FORM
    from portal.batches import dispatch
    from portal.jobs import periodic
    from portal.models import Batch
    from portal.models.base import utcnow

    tasks = factory.tasks(3, starter=users["admin"])

    def redis_down(*_args, **_kwargs):
        raise ConnectionError("Redis is down")

    monkeypatch.setattr(queueing, "get_queue", redis_down)
    response = api("alice").post("/batches", json={
        "node_id": tasks[0].node_id, "task_ids": [t.id for t in tasks], "action": "approve",
        "form": GOOD_FORM})
    monkeypatch.undo()
    assert response.status_code == 202                # committed: the database keeps the work
    batch_id = response.get_json()["batch"]["id"]
    assert queueing.get_queue().count == 0
    db.session.execute(db.update(Batch).where(Batch.id == batch_id).values(
        created_at=utcnow() - timedelta(seconds=app.config["BATCH_STALL_SECONDS"] + 1)))
    db.session.commit()
    periodic.recover_batches()
    lanes = dispatch.lanes_for(db.session.get(Batch, batch_id))
    assert lanes >= 1 and [job.args for job in queueing.get_queue().get_jobs()] == [(batch_id,)] * lanes
