"""Prometheus metrics at /metrics: the batch engine's counters move while a batch runs, retries and
recovery are counted by kind, requests by endpoint and status, the gauges read at scrape time follow
the database and Redis, work-horses of real workers count into the same scrape, and only allowed
clients (token or address) get an answer."""
import os

import pytest
from prometheus_client.parser import text_string_to_metric_families

from support import assert_counters_match_items, wait_for
from portal import events
from portal.batches import control, dispatch, recovery, runner
from portal.infra import metrics
from portal.infra.extensions import db
from portal.models import Batch


def scrape(client, **kwargs):
    """{(sample name, {label: value} as a frozenset): value} of one scrape."""
    response = client.get("/metrics", **kwargs)
    assert response.status_code == 200, response.status_code
    assert response.headers["Content-Type"].startswith("text/plain")
    samples = {}
    for family in text_string_to_metric_families(response.get_data(as_text=True)):
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return samples


def value(samples, name, **labels):
    return samples.get((name, frozenset(labels.items())), 0.0)


def moved(before, after, name, **labels):
    return value(after, name, **labels) - value(before, name, **labels)


def _batch(factory, users, count, **options):
    tasks = factory.tasks(count, starter=users["admin"])
    return factory.batch(users["alice"], tasks, **options)


def test_a_batch_run_moves_item_counters_and_durations_while_it_runs(client, factory):
    users = factory.standard()
    batch = _batch(factory, users, 3)
    node = str(batch.node_id)
    before = scrape(client)
    assert value(before, "portal_batches", status="pending") == 1

    during = []

    def scrape_after_the_first_item(_batch_id, **_kwargs):
        # The second item's signal: the first one is counted whatever the receivers' order.
        finished.append(1)
        if len(finished) == 2:
            during.append(scrape(client))
    finished = []
    events.item_finished.connect(scrape_after_the_first_item)
    try:
        assert runner.run_inline(batch.id) == 3
    finally:
        events.item_finished.disconnect(scrape_after_the_first_item)
    after = scrape(client)

    (mid,) = during
    assert 1 <= moved(before, mid, "portal_batch_items_finished_total", outcome="success", node=node) <= 2
    assert value(mid, "portal_batches", status="running") == 1
    assert moved(before, after, "portal_batch_items_finished_total", outcome="success", node=node) == 3
    assert moved(before, after, "portal_batch_item_duration_seconds_count", outcome="success") == 3
    assert moved(before, after, "portal_batch_item_duration_seconds_sum", outcome="success") > 0
    assert moved(before, after, "portal_batch_item_duration_seconds_bucket",
                 outcome="success", le="+Inf") == 3
    assert value(after, "portal_batches", status="finished") == 1
    assert value(after, "portal_batches", status="running") == 0
    assert value(after, "portal_metrics_source_up", source="database") == 1
    assert value(after, "portal_metrics_source_up", source="redis") == 1


def test_failures_are_counted_by_outcome(client, factory):
    users = factory.standard()
    users["alice"].disabled = True  # every item fails with a user error
    db.session.commit()
    batch = _batch(factory, users, 2)
    before = scrape(client)
    runner.run_inline(batch.id)
    after = scrape(client)
    node = str(batch.node_id)
    assert moved(before, after, "portal_batch_items_finished_total", outcome="failed", node=node) == 2
    assert moved(before, after, "portal_batch_items_finished_total", outcome="success", node=node) == 0


def test_manual_and_automatic_retries_and_recovery_actions_are_counted(client, factory, monkeypatch):
    users = factory.standard()
    before = scrape(client)

    # manual: a supervisor retries two items that failed with a user error
    users["alice"].disabled = True
    db.session.commit()
    failed = _batch(factory, users, 2)
    runner.run_inline(failed.id)
    users["alice"].disabled = False
    db.session.commit()
    control.retry(failed, users["sam"])
    db.session.commit()

    # automatic: an unexpected error sends the item back to pending
    flaky = _batch(factory, users, 1)
    real_decide = runner.decide
    raised = []

    def decide_failing_once(*args, **kwargs):
        if not raised:
            raised.append(1)
            raise RuntimeError("something nobody expected")
        return real_decide(*args, **kwargs)
    monkeypatch.setattr(runner, "decide", decide_failing_once)
    runner.run_inline(flaky.id)
    assert raised == [1]

    # recovery: a drained batch left running is closed
    drained = _batch(factory, users, 1)
    runner.run_inline(drained.id)
    db.session.execute(db.update(Batch).where(Batch.id == drained.id).values(
        status="running", finished_at=None))
    db.session.commit()
    assert recovery.recover()["closed"] == 1

    after = scrape(client)
    assert moved(before, after, "portal_batch_items_retried_total", kind="manual") == 2
    assert moved(before, after, "portal_batch_items_retried_total", kind="automatic") == 1
    assert moved(before, after, "portal_recovery_actions_total", kind="closed") == 1
    assert moved(before, after, "portal_recovery_actions_total", kind="reclaimed") == 0


def test_http_requests_are_counted_by_endpoint_and_status_with_latency(client, factory):
    factory.standard()
    before = scrape(client)
    assert client.get("/login").status_code == 200
    assert client.get("/login").status_code == 200
    assert client.get("/no-such-page").status_code == 404
    after = scrape(client)
    assert moved(before, after, "portal_http_requests_total", endpoint="auth.login", status="200") == 2
    assert moved(before, after, "portal_http_requests_total", endpoint="unmatched", status="404") == 1
    assert moved(before, after, "portal_http_request_duration_seconds_count", endpoint="auth.login") == 2
    assert moved(before, after, "portal_http_request_duration_seconds_sum", endpoint="auth.login") > 0
    # the first scrape is counted by the second
    assert moved(before, after, "portal_http_requests_total", endpoint="metrics", status="200") == 1


def test_queue_gauges_follow_redis(client, factory):
    users = factory.standard()
    batch = _batch(factory, users, 2)
    empty = scrape(client)
    assert value(empty, "portal_rq_queue_length", queue="portal") == 0
    assert value(empty, "portal_rq_queue_oldest_job_age_seconds", queue="portal") == 0
    assert value(empty, "portal_rq_workers_alive") == 0
    dispatch.enqueue_lanes(batch.id, 2)
    waiting = scrape(client)
    assert value(waiting, "portal_rq_queue_length", queue="portal") == 2
    assert 0 <= value(waiting, "portal_rq_queue_oldest_job_age_seconds", queue="portal") < 60
    assert ("portal_rq_failed_jobs", frozenset({("queue", "portal")})) in waiting


def test_loopback_may_scrape_other_addresses_get_a_plain_404(client, app, monkeypatch):
    assert client.get("/metrics").status_code == 200
    refused = client.get("/metrics", environ_base={"REMOTE_ADDR": "10.1.2.3"})
    assert refused.status_code == 404
    assert "portal_" not in refused.get_data(as_text=True)
    monkeypatch.setitem(app.config, "METRICS_ALLOWED_ADDRESSES", "192.0.2.7, 10.1.0.0/16")
    assert client.get("/metrics", environ_base={"REMOTE_ADDR": "10.1.2.3"}).status_code == 200
    assert client.get("/metrics", environ_base={"REMOTE_ADDR": "10.2.0.1"}).status_code == 404
    assert client.get("/metrics").status_code == 404  # loopback is no longer listed
    monkeypatch.setitem(app.config, "METRICS_ALLOWED_ADDRESSES", "")
    assert client.get("/metrics").status_code == 404


def test_a_configured_token_opens_it_from_anywhere_and_a_wrong_one_is_a_404(client, app, monkeypatch):
    monkeypatch.setitem(app.config, "METRICS_TOKEN", "s3cret-scrape-token")
    far = {"REMOTE_ADDR": "10.1.2.3"}
    assert scrape(client, environ_base=far, headers={"Authorization": "Bearer s3cret-scrape-token"})
    for header in ("Bearer wrong-token", "Bearer s3cret-scrape-token-and-more", "Bearer ", "Basic x"):
        response = client.get("/metrics", environ_base=far, headers={"Authorization": header})
        assert response.status_code == 404, header
    assert client.get("/metrics", environ_base=far).status_code == 404
    # a wrong token is refused even from an allowed address
    assert client.get("/metrics", headers={"Authorization": "Bearer wrong-token"}).status_code == 404
    assert client.get("/metrics").status_code == 200  # no token: the address decides


def test_metric_files_go_to_the_instance_folder_unless_the_directory_is_set(app, monkeypatch):
    assert os.listdir(os.environ[metrics.MULTIPROC_ENV]), "this process wrote no metric file"
    monkeypatch.delenv(metrics.MULTIPROC_ENV)
    assert metrics.multiprocess_dir(app) == os.path.join(app.instance_path, "prometheus")
    monkeypatch.setenv(metrics.MULTIPROC_ENV, "/srv/metrics")
    assert metrics.multiprocess_dir(app) == "/srv/metrics"


def test_clearing_removes_the_metric_files_of_earlier_runs(app, monkeypatch, tmp_path):
    monkeypatch.setenv(metrics.MULTIPROC_ENV, str(tmp_path))
    for name in ("counter_123.db", "histogram_horse-w1.db", "notes.txt"):
        (tmp_path / name).write_text("x")
    assert metrics.clear_multiprocess_dir(app) == 2
    assert os.listdir(tmp_path) == ["notes.txt"]


def test_work_horses_of_real_workers_count_into_the_same_scrape(client, factory, workers):
    users = factory.standard()
    batch = _batch(factory, users, 12)
    node = str(batch.node_id)
    before = scrape(client)
    dispatch.start(batch)
    assert value(scrape(client), "portal_rq_queue_length", queue="portal") >= 1
    workers.start(1)
    wait_for(lambda: db.session.get(Batch, batch.id, populate_existing=True).status == "finished",
             timeout=180, message="batch finished")
    assert_counters_match_items(batch.id)
    after = scrape(client)
    assert value(after, "portal_rq_workers_alive") == 1  # still waiting for work
    assert moved(before, after, "portal_batch_items_finished_total", outcome="success", node=node) == 12
    assert moved(before, after, "portal_batch_item_duration_seconds_count", outcome="success") == 12
    # The worker's horses took turns on one set of files, named after the worker.
    files = os.listdir(metrics.multiprocess_dir(client.application))
    assert any(name.startswith("counter_horse-") for name in files), files


@pytest.mark.parametrize("job_worker, expected", [("w1-123", "horse-w1-123"),
                                                  ("a_b/c", "horse-a-b-c")])
def test_work_horses_write_the_files_of_their_worker(monkeypatch, job_worker, expected):
    class FakeJob:
        worker_name = job_worker
    monkeypatch.setattr(metrics, "get_current_job", lambda: FakeJob())
    assert metrics._process_identity() == expected
    monkeypatch.setattr(metrics, "get_current_job", lambda: None)
    assert metrics._process_identity() == str(os.getpid())
