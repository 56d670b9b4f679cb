"""Throughput of the batch engine against two baselines on the same database.

    .venv/bin/python bench/bench_batches.py [--db sqlite|postgres] [--items 10000]

1. floor: a bare loop calling the same approve service, one transaction per task, in this process;
2. the batch engine: one batch run by 2 real RQ worker processes (default concurrency 5);
3. naive: the same work as one plain RQ job per task, 2 worker processes;
plus the time to create a 20,000-item batch. Prints items/s and the ratios.

The machine is shared and noisy, so floor and engine are measured in turns,
--rounds times on fresh tasks, and the median ratio is the figure to report.
"""
import argparse
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench.setup import WorkerPool, bench_app, bulk_tasks  # noqa: E402

FORM = {"amount": 10, "category": "Travel"}


def _wait(predicate, timeout=1800):
    from portal.extensions import db
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        db.session.rollback()
        if value:
            return value
        time.sleep(0.2)
    raise RuntimeError("timed out")


def floor(user, node, items):
    from portal.extensions import db
    from portal.workflow.engine import decide
    ids = bulk_tasks(node, items, "Floor")
    start = time.perf_counter()
    for task_id in ids:
        decide(task_id, user, "approve", "bench", FORM)
        db.session.commit()
    return items / (time.perf_counter() - start)


def batch_engine(user, node, items, redis, workers=2):
    from portal.batches import creation, dispatch
    from portal.extensions import db
    from portal.models import Batch
    ids = bulk_tasks(node, items, "Batch")
    batch = creation.create_batch(user, node, task_ids=ids, action="approve", comment="bench",
                                  form=FORM)
    db.session.commit()
    pool = WorkerPool(workers)
    try:
        pool.wait_ready(redis)
        dispatch.start(batch)
        batch_id = batch.id
        done = _wait(lambda: (b := db.session.get(Batch, batch_id)) and b.status == "finished" and b)
        seconds = (done.finished_at - done.started_at).total_seconds()
        assert done.success == items, (done.success, done.failed)
    finally:
        pool.stop()
    return items / seconds


def naive(user, node, items, redis):
    from portal.extensions import db
    from portal.models import History
    from portal.queueing import get_queue
    ids = bulk_tasks(node, items, "Naive")
    queue = get_queue()
    pool = WorkerPool(2)
    try:
        pool.wait_ready(redis)
        start_count = db.session.execute(db.select(db.func.count(History.id)).where(
            History.action == "approve")).scalar()
        db.session.rollback()
        started = time.perf_counter()
        with redis.pipeline() as pipe:
            for task_id in ids:
                queue.enqueue("bench.naive_jobs.approve_one", task_id, user.id, FORM,
                              result_ttl=0, pipeline=pipe)
            pipe.execute()
        _wait(lambda: db.session.execute(db.select(db.func.count(History.id)).where(
            History.action == "approve")).scalar() - start_count >= items)
        seconds = time.perf_counter() - started
    finally:
        pool.stop()
    return items / seconds


def creation_time(user, node, items=20000):
    from portal.batches import creation
    from portal.extensions import db
    ids = bulk_tasks(node, items, "Create")
    started = time.perf_counter()
    creation.create_batch(user, node, task_ids=ids, action="approve", form=FORM)
    db.session.commit()
    return time.perf_counter() - started


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", choices=("sqlite", "postgres"), default="sqlite")
    parser.add_argument("--items", type=int, default=10000)
    parser.add_argument("--naive-items", type=int, default=2000,
                        help="tasks for the one-job-per-item baseline (it is slow; its rate is per item)")
    parser.add_argument("--skip-naive", action="store_true")
    parser.add_argument("--workers", type=int, default=2, help="worker processes for the engine")
    parser.add_argument("--rounds", type=int, default=3, help="floor and engine measured in turns")
    args = parser.parse_args()
    app = bench_app(args.db)
    with app.app_context():
        from portal.demo import EXPENSE
        from portal.accounts import create_user
        from portal.extensions import db
        from portal.models import Node
        from portal.queueing import get_redis
        from portal.workflow.definitions import load_definition
        user = create_user("alice", "password-123")
        load_definition(EXPENSE)
        db.session.commit()
        node = db.session.execute(db.select(Node).where(Node.key == "manager")).scalar_one()
        redis = get_redis()
        print(f"database: {db.engine.dialect.name}, items: {args.items}, workers: {args.workers}")
        ratios, batch_rates = [], []
        for round_number in range(1, args.rounds + 1):
            floor_rate = floor(user, node, args.items)
            batch_rate = batch_engine(user, node, args.items, redis, args.workers)
            ratios.append(batch_rate / floor_rate)
            batch_rates.append(batch_rate)
            print(f"round {round_number}: floor (bare loop, 1 process) {floor_rate:7.1f} items/s,"
                  f" batch engine ({args.workers} workers) {batch_rate:7.1f} items/s"
                  f" = {ratios[-1]:.2f} x floor")
        print(f"batch engine / floor, median of {args.rounds}: {statistics.median(ratios):.2f}"
              f"  (lowest {min(ratios):.2f})")
        if not args.skip_naive:
            naive_rate = naive(user, node, args.naive_items, redis)
            print(f"one RQ job per item (2 workers):     {naive_rate:8.1f} items/s"
                  f"   ({args.naive_items} items)"
                  f"\n  batch engine (median round) = {statistics.median(batch_rates) / naive_rate:.1f}"
                  f" x one job per item")
        seconds = creation_time(user, node)
        print(f"create a 20,000-item batch:          {seconds:8.2f} s")


if __name__ == "__main__":
    main()
