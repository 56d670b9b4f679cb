"""Server time of the batch page and the items API on a 100,000-item batch.

    .venv/bin/python bench/bench_pages.py [--db sqlite|postgres] [--items 100000]

Builds one batch of N finished items (a mix of outcomes) among other batches,
then times requests through the WSGI test client (server work only, no
network): the batch page, its item filters and a deep keyset page, the
progress JSON, and GET /api/v1/batches/<id>/items likewise. Prints the median
and the slowest of 20 runs each; the target is <= 100 ms.
"""
import argparse
import os
import re
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench.setup import bench_app, bulk_tasks  # noqa: E402

RUNS = 20


def _build(user, node, items):
    from sqlalchemy import insert
    from portal.batches import creation
    from portal.infra.extensions import db
    from portal.models import Batch, BatchItem
    from portal.models.base import utcnow
    ids = bulk_tasks(node, 1000, "Other")
    creation.create_batch(user, node, task_ids=ids, action="approve", form={"amount": 1, "category": "Travel"})
    now = utcnow()
    batch = Batch(process_id=node.process_id, node_id=node.id, status="finished", mode="single",
                  action="approve", concurrency=5, created_by_id=user.id, created_at=now,
                  updated_at=now, started_at=now, finished_at=now, total=items)
    db.session.add(batch)
    db.session.flush()
    batch.number = f"B{now:%Y%m%d}-{batch.id:06d}"
    outcomes = ["success"] * 8 + ["failed", "ignored"]
    rows = []
    for i in range(items):
        status = outcomes[i % len(outcomes)]
        rows.append({"batch_id": batch.id, "task_id": 10_000_000 + i, "status": status,
                     "error": "Amount: Enter a number." if status == "failed" else None,
                     "error_kind": "validation" if status == "failed" else None,
                     "retry_count": 0, "attempts": 1, "finished_at": now})
        if len(rows) == 10000:
            db.session.execute(insert(BatchItem), rows)
            rows = []
    if rows:
        db.session.execute(insert(BatchItem), rows)
    batch.success = items * 8 // 10
    batch.failed = items // 10
    batch.ignored = items - batch.success - batch.failed
    db.session.commit()
    return batch.id


def _time(client, url, headers=None):
    timings = []
    for _ in range(RUNS):
        started = time.perf_counter()
        response = client.get(url, headers=headers or {})
        timings.append((time.perf_counter() - started) * 1000)
        assert response.status_code == 200, (url, response.status_code)
    return statistics.median(timings), max(timings), response


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", choices=("sqlite", "postgres"), default="sqlite")
    parser.add_argument("--items", type=int, default=100000)
    args = parser.parse_args()
    app = bench_app(args.db)
    app.config["WTF_CSRF_ENABLED"] = False
    with app.app_context():
        from portal.accounts import create_user, issue_token
        from portal.demo import EXPENSE
        from portal.infra.extensions import db
        from portal.models import Node
        from portal.workflow.process_files import load_definition
        user = create_user("alice", "password-123", "supervisor")
        load_definition(EXPENSE)
        token = issue_token(user)
        db.session.commit()
        node = db.session.execute(db.select(Node).where(Node.key == "manager")).scalar_one()
        started = time.perf_counter()
        batch_id = _build(user, node, args.items)
        print(f"database: {db.engine.dialect.name}; built a {args.items}-item batch in "
              f"{time.perf_counter() - started:.1f} s")
        client = app.test_client()
        client.post("/login", data={"username": "alice", "password": "password-123"})
        api = {"Authorization": f"Bearer {token}"}
        items = client.get(f"/api/v1/batches/{batch_id}/items?limit=500", headers=api).get_json()
        deep_cursor = items["items"][-1]["id"] + args.items // 2
        page = client.get(f"/batches/{batch_id}").get_data(as_text=True)
        later = re.search(r'href="([^"]*after=\d+[^"]*)"', page)
        cases = [
            ("batch page", f"/batches/{batch_id}", None),
            ("batch page, failed items", f"/batches/{batch_id}?status=failed", None),
            ("batch page, next items page", later.group(1).replace("&amp;", "&") if later else
             f"/batches/{batch_id}", None),
            ("progress JSON", f"/batches/{batch_id}/progress", None),
            ("API items, first 50", f"/api/v1/batches/{batch_id}/items?limit=50", api),
            ("API items, failed only", f"/api/v1/batches/{batch_id}/items?status=failed&limit=50", api),
            ("API items, deep cursor", f"/api/v1/batches/{batch_id}/items?cursor={deep_cursor}&limit=50", api),
            ("API batch", f"/api/v1/batches/{batch_id}", api),
        ]
        print(f"{'request':32} {'median ms':>10} {'max ms':>8}   ({RUNS} runs each)")
        for name, url, headers in cases:
            median, worst, _response = _time(client, url, headers)
            print(f"{name:32} {median:10.1f} {worst:8.1f}")


if __name__ == "__main__":
    main()
