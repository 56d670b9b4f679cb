"""The batch engine's signals (portal.events): each event is sent where it happens, with what listeners need."""
from contextlib import contextmanager

from support import GOOD_FORM
from portal import events
from portal.batches import control, runner
from portal.infra.extensions import db


@contextmanager
def caught(signal):
    seen = []

    def receiver(sender, **kwargs):
        seen.append((sender, kwargs))

    signal.connect(receiver)
    try:
        yield seen
    finally:
        signal.disconnect(receiver)


def test_a_run_sends_item_finished_per_item_and_batch_finished_once(factory):
    users = factory.standard(tasks=3)
    tasks = factory.tasks(3, starter=users["admin"])
    batch = factory.batch(users["alice"], tasks)
    with caught(events.item_finished) as items, caught(events.batch_finished) as finished:
        runner.run_inline(batch.id)
    assert [(sender, kw["outcome"], kw["node_id"]) for sender, kw in items] == [
        (batch.id, "success", batch.node_id)] * 3
    assert all(kw["seconds"] >= 0 for _s, kw in items)
    assert [sender.id for sender, _kw in finished] == [batch.id]


def test_cancel_and_a_manual_retry_are_sent(factory):
    users = factory.standard(tasks=2)
    tasks = factory.tasks(2, starter=users["admin"])
    batch = factory.batch(users["alice"], tasks)
    with caught(events.batch_cancelled) as cancelled:
        control.cancel(batch, users["alice"])
        db.session.commit()
    assert [sender.id for sender, _kw in cancelled] == [batch.id]

    users["alice"].disabled = True
    db.session.commit()
    user_error = factory.batch(users["alice"], factory.tasks(1, starter=users["admin"]), form=GOOD_FORM)
    runner.run_inline(user_error.id)  # the creator is disabled: a user error, retryable
    users["alice"].disabled = False
    db.session.commit()
    with caught(events.items_retried) as retried:
        control.retry(user_error, users["sam"])
        db.session.commit()
    assert [(sender, kw) for sender, kw in retried] == [(user_error.id, {"count": 1, "automatic": False})]


def test_the_last_failure_at_the_retry_limit_is_sent(app, factory, monkeypatch):
    monkeypatch.setitem(app.config, "BATCH_RETRY_LIMIT", 1)
    users = factory.standard()
    users["alice"].disabled = True
    db.session.commit()
    batch = factory.batch(users["alice"], factory.tasks(1, starter=users["admin"]))
    with caught(events.item_at_retry_limit) as at_limit:
        runner.run_inline(batch.id)
        assert at_limit == []  # a first failure has retries left
        control.retry(batch, users["sam"])
        db.session.commit()
        runner.run_inline(batch.id)
    assert len(at_limit) == 1 and at_limit[0][0] == batch.id
