"""Throughput of the batch engine against two baselines on the same database.

    .venv/bin/python bench/bench_batches.py [--db sqlite|postgres] [--items 10000] [--process expense|gateway]

1. floor: a bare loop calling the same approve service, one transaction per task, in this process;
2. the batch engine: one batch run by 2 real RQ worker processes (default concurrency 5);
3. naive: the same work as one plain RQ job per task, 2 worker processes;
plus the time to create a 20,000-item batch. Prints items/s and the ratios.

The machine is shared and noisy, so floor and engine are measured in turns,
--rounds times on fresh tasks, and the median ratio is the figure to report.

--process expense (the default) batches the JSON demo process's first node; --process gateway a BPMN file
whose first user task is followed by an exclusive gateway on a form value (review, then director when
amount > 10000, else clerk), so every decision also evaluates a condition and opens the chosen branch's task.
"""
import argparse
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench.setup import WorkerPool, bench_app, bulk_tasks, review_task  # noqa: E402

FORM = {"amount": 10, "category": "Travel"}

# review -> exclusive gateway on the review form's amount -> director | clerk; both end the process.
GATEWAY_BPMN = """<?xml version="1.0" encoding="UTF-8"?>
<bpmn:definitions xmlns:bpmn="http://www.omg.org/spec/BPMN/20100524/MODEL"
    xmlns:camunda="http://camunda.org/schema/1.0/bpmn" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"
    id="Definitions_bench_gateway" targetNamespace="http://bpmn.io/schema/bpmn">
  <bpmn:process id="bench_gateway" name="Bench: review, then director or clerk" isExecutable="true">
    <bpmn:startEvent id="start"/>
    <bpmn:sequenceFlow id="to_review" sourceRef="start" targetRef="review"/>
""" + review_task("alice") + """    <bpmn:sequenceFlow id="to_amount" sourceRef="review" targetRef="amount_gateway"/>
    <bpmn:exclusiveGateway id="amount_gateway" name="Over 10,000?" default="to_clerk"/>
    <bpmn:sequenceFlow id="to_director" sourceRef="amount_gateway" targetRef="director">
      <bpmn:conditionExpression xsi:type="bpmn:tFormalExpression">${amount &gt; 10000}</bpmn:conditionExpression>
    </bpmn:sequenceFlow>
    <bpmn:sequenceFlow id="to_clerk" sourceRef="amount_gateway" targetRef="clerk"/>
    <bpmn:userTask id="director" name="Director" camunda:candidateGroups="director"/>
    <bpmn:userTask id="clerk" name="Clerk" camunda:candidateGroups="clerk"/>
    <bpmn:sequenceFlow id="director_done" sourceRef="director" targetRef="end_director"/>
    <bpmn:sequenceFlow id="clerk_done" sourceRef="clerk" targetRef="end_clerk"/>
    <bpmn:endEvent id="end_director"/>
    <bpmn:endEvent id="end_clerk"/>
  </bpmn:process>
</bpmn:definitions>
"""
# Over 10,000: the gateway sends every item to the director.
GATEWAY_FORM = {"amount": 12500, "category": "Travel"}


def _load():
    # The machine may be shared: the load says how much of it the measurements had.
    return " ".join(f"{value:.1f}" for value in os.getloadavg())


def _wait(predicate, timeout=1800):
    from portal.infra.extensions import db
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        db.session.rollback()
        if value:
            return value
        time.sleep(0.2)
    raise RuntimeError("timed out")


def floor(user, node, items, form=FORM):
    from portal.infra.extensions import db
    from portal.workflow.engine import decide
    ids = bulk_tasks(node, items, "Floor")
    start = time.perf_counter()
    for task_id in ids:
        decide(task_id, user, "approve", "bench", form)
        db.session.commit()
    return items / (time.perf_counter() - start)


def batch_engine(user, node, items, redis, workers=2, form=FORM):
    from portal.batches import creation, dispatch
    from portal.infra.extensions import db
    from portal.models import Batch
    ids = bulk_tasks(node, items, "Batch")
    batch = creation.create_batch(user, node, task_ids=ids, action="approve", comment="bench",
                                  form=form)
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


def naive(user, node, items, redis, form=FORM):
    from portal.infra.extensions import db
    from portal.infra.queueing import get_queue
    from portal.models import History
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
                queue.enqueue("bench.naive_jobs.approve_one", task_id, user.id, form,
                              result_ttl=0, pipeline=pipe)
            pipe.execute()
        _wait(lambda: db.session.execute(db.select(db.func.count(History.id)).where(
            History.action == "approve")).scalar() - start_count >= items)
        seconds = time.perf_counter() - started
    finally:
        pool.stop()
    return items / seconds


def creation_time(user, node, items=20000, form=FORM):
    from portal.batches import creation
    from portal.infra.extensions import db
    ids = bulk_tasks(node, items, "Create")
    started = time.perf_counter()
    creation.create_batch(user, node, task_ids=ids, action="approve", form=form)
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
    parser.add_argument("--process", choices=("expense", "gateway"), default="expense",
                        help="the JSON demo process, or a BPMN file with an exclusive gateway after its first"
                             " task")
    parser.add_argument("--create-items", type=int, default=20000,
                        help="items of the batch whose creation is timed")
    args = parser.parse_args()
    app = bench_app(args.db)
    with app.app_context():
        from portal.accounts import create_user
        from portal.demo import EXPENSE
        from portal.infra.extensions import db
        from portal.infra.queueing import get_redis
        from portal.models import Node
        from portal.workflow.process_files import load_bpmn_definition, load_definition
        user = create_user("alice", "password-123")
        if args.process == "gateway":
            process, _created = load_bpmn_definition(GATEWAY_BPMN.encode("utf-8"))
            form, node_key = GATEWAY_FORM, "review"
        else:
            process, _created = load_definition(EXPENSE)
            form, node_key = FORM, "manager"
        db.session.commit()
        node = db.session.execute(db.select(Node).where(
            Node.process_id == process.id, Node.key == node_key)).scalar_one()
        redis = get_redis()
        print(f"database: {db.engine.dialect.name}, process: {args.process}, items: {args.items},"
              f" workers: {args.workers}, {os.cpu_count()} cores, load average {_load()}")
        ratios, batch_rates = [], []
        for round_number in range(1, args.rounds + 1):
            floor_rate = floor(user, node, args.items, form)
            batch_rate = batch_engine(user, node, args.items, redis, args.workers, form)
            ratios.append(batch_rate / floor_rate)
            batch_rates.append(batch_rate)
            print(f"round {round_number}: floor (bare loop, 1 process) {floor_rate:7.1f} items/s,"
                  f" batch engine ({args.workers} workers) {batch_rate:7.1f} items/s"
                  f" = {ratios[-1]:.2f} x floor")
        print(f"batch engine / floor, median of {args.rounds}: {statistics.median(ratios):.2f}"
              f"  (lowest {min(ratios):.2f})")
        if not args.skip_naive:
            naive_rate = naive(user, node, args.naive_items, redis, form)
            print(f"one RQ job per item (2 workers):     {naive_rate:8.1f} items/s"
                  f"   ({args.naive_items} items)"
                  f"\n  batch engine (median round) = {statistics.median(batch_rates) / naive_rate:.1f}"
                  f" x one job per item")
        seconds = creation_time(user, node, args.create_items, form)
        print(f"create a {args.create_items:,}-item batch:          {seconds:8.2f} s")
        print(f"load average at the end: {_load()}")


if __name__ == "__main__":
    main()
