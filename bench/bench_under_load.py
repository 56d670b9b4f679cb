"""How long users wait while a big batch runs: requests timed idle and under load.

    .venv/bin/python bench/bench_under_load.py [--db sqlite|postgres] [--items 8000]

Times, through the API with the WSGI test client (server work only), a read
(GET /api/v1/batches/<id>, what the batch page polls) and a write (approving
one task, POST /api/v1/tasks/<id>/approve): first with nothing else running,
then while 2 real RQ workers run a batch of N items. Prints the median, the
95th percentile and the slowest request of each, and the batch's items/s
meanwhile. On SQLite every request needs the database's single write lock,
which the batch's lanes take for every item; this shows what that costs.
"""
import argparse
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench.setup import WorkerPool, bench_app, bulk_tasks  # noqa: E402

FORM = {"amount": 10, "category": "Travel"}
SAMPLES = 200


def _sample(client, headers, batch_id, single_tasks):
    reads, writes = [], []
    for _ in range(SAMPLES):
        started = time.perf_counter()
        response = client.get(f"/api/v1/batches/{batch_id}", headers=headers)
        reads.append((time.perf_counter() - started) * 1000)
        assert response.status_code == 200, response.status_code
        started = time.perf_counter()
        response = client.post(f"/api/v1/tasks/{single_tasks.pop()}/approve", headers=headers,
                               json={"action": "approve", "comment": "single", "form": FORM})
        writes.append((time.perf_counter() - started) * 1000)
        assert response.status_code == 200, response.get_json()
        time.sleep(0.01)  # a user, not a load generator
    return reads, writes


def _summary(timings):
    ordered = sorted(timings)
    return (f"median {statistics.median(ordered):6.1f} ms   p95 {ordered[int(len(ordered) * 0.95)]:6.1f} ms"
            f"   max {ordered[-1]:7.1f} ms")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", choices=("sqlite", "postgres"), default="sqlite")
    parser.add_argument("--items", type=int, default=8000)
    args = parser.parse_args()
    app = bench_app(args.db)
    with app.app_context():
        from portal.accounts import create_user, issue_token
        from portal.batches import creation, dispatch
        from portal.demo import EXPENSE
        from portal.infra.extensions import db
        from portal.infra.queueing import get_redis
        from portal.models import Batch, Node
        from portal.workflow.process_files import load_definition
        user = create_user("alice", "password-123")
        load_definition(EXPENSE)
        token = issue_token(user)
        db.session.commit()
        node = db.session.execute(db.select(Node).where(Node.key == "manager")).scalar_one()
        single_tasks = bulk_tasks(node, 2 * SAMPLES, "Single")
        batch = creation.create_batch(user, node, task_ids=bulk_tasks(node, args.items, "Batch"),
                                      action="approve", comment="bench", form=FORM)
        db.session.commit()
        batch_id = batch.id
        client = app.test_client()
        headers = {"Authorization": f"Bearer {token}"}
        print(f"database: {db.engine.dialect.name}; batch of {args.items} items, 2 workers; "
              f"{SAMPLES} requests of each kind")

        reads, writes = _sample(client, headers, batch_id, single_tasks)
        print(f"idle       read  {_summary(reads)}")
        print(f"idle       write {_summary(writes)}")

        pool = WorkerPool(2)
        try:
            pool.wait_ready(get_redis())
            dispatch.start(batch)
            while db.session.get(Batch, batch_id).success < 200:
                db.session.rollback()
                time.sleep(0.05)
            before = db.session.get(Batch, batch_id).success
            db.session.rollback()
            started = time.perf_counter()
            reads, writes = _sample(client, headers, batch_id, single_tasks)
            seconds = time.perf_counter() - started
            current = db.session.get(Batch, batch_id)
            done, still_pending = current.success - before, current.pending
            db.session.rollback()
        finally:
            pool.stop()
        print(f"under load read  {_summary(reads)}")
        print(f"under load write {_summary(writes)}")
        print(f"the batch meanwhile: {done / seconds:.1f} items/s"
              + ("" if still_pending else "  (it finished during the sampling: use more --items)"))


if __name__ == "__main__":
    main()
