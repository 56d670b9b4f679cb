"""Completion notices: each batch event makes exactly one notice for the batch's creator, however
often the finishing code runs or races, and the pages show, open and mark them read (own ones only).
"""
import threading
import time

import pytest

from support import csrf_token, login
from portal import events
from portal.batches import control, recovery, runner
from portal.batches.lifecycle import finish_if_done, lock_batch
from portal.infra.extensions import db
from portal.models import Batch, BatchItem, Notice
from portal.notices import records, receivers


def _notices(**where):
    db.session.rollback()
    rows = db.session.execute(db.select(Notice).filter_by(**where).order_by(Notice.id)).scalars().all()
    return [(n.kind, n.user_id, n.batch_id, n.item_id) for n in rows]


def _failing_batch(factory, users, count=2, creator="alice"):
    """A batch whose items fail with a user error (its creator is disabled while it runs)."""
    batch = factory.batch(users[creator], factory.tasks(count, starter=users["admin"]))
    users[creator].disabled = True
    db.session.commit()
    runner.run_inline(batch.id)
    users[creator].disabled = False
    db.session.commit()
    return batch


# --- one notice per event ------------------------------------------------------------------

def test_a_finished_batch_makes_one_notice_for_its_creator(factory, users):
    batch = factory.batch(users["alice"], factory.tasks(3, starter=users["admin"]))
    runner.run_inline(batch.id)
    assert _notices() == [("finished", users["alice"].id, batch.id, 0)]


def test_a_batch_with_failures_makes_a_finished_with_errors_notice(factory, users):
    batch = _failing_batch(factory, users)
    assert _notices() == [("finished_with_errors", users["alice"].id, batch.id, 0)]


def test_a_cancel_makes_one_notice_for_the_creator_whoever_cancels(factory, users):
    batch = factory.batch(users["alice"], factory.tasks(2, starter=users["admin"]))
    control.cancel(batch, users["sam"])
    db.session.commit()
    assert _notices() == [("cancelled", users["alice"].id, batch.id, 0)]
    # The cancelled batch's end is no second event.
    assert recovery.finish_drained_batches() == 0
    assert _notices() == [("cancelled", users["alice"].id, batch.id, 0)]


def test_an_item_at_the_retry_limit_makes_one_notice_and_a_refinish_is_a_new_event(
        app, monkeypatch, factory, users):
    monkeypatch.setitem(app.config, "BATCH_RETRY_LIMIT", 1)
    batch = _failing_batch(factory, users, count=1)
    item_id = db.session.execute(db.select(BatchItem.id).where(BatchItem.batch_id == batch.id)).scalar()
    assert _notices() == [("finished_with_errors", users["alice"].id, batch.id, 0)]
    users["alice"].disabled = True
    db.session.commit()
    control.retry(batch, users["sam"])
    db.session.commit()
    runner.run_inline(batch.id)   # fails again, now at the limit, and the batch finishes again
    assert _notices() == [("finished_with_errors", users["alice"].id, batch.id, 0),
                          ("retry_limit", users["alice"].id, batch.id, item_id),
                          ("finished_with_errors", users["alice"].id, batch.id, 0)]
    rounds = db.session.execute(db.select(Notice.round).where(Notice.kind == "finished_with_errors")
                                .order_by(Notice.id)).scalars().all()
    assert rounds[0] < rounds[1]


def test_running_the_finishing_code_twice_makes_one_notice(factory, users):
    batch = factory.batch(users["alice"], factory.tasks(2, starter=users["admin"]))
    runner.run_inline(batch.id)
    # A stale view of the batch finishes it again (a retried transaction, a late worker).
    for _ in range(2):
        stale = lock_batch(batch.id)
        stale.status = "running"
        assert finish_if_done(stale) is True
        db.session.commit()
    assert recovery.finish_drained_batches() == 0
    # And the signal itself sent twice more.
    events.batch_finished.send(db.session.get(Batch, batch.id))
    events.batch_finished.send(db.session.get(Batch, batch.id))
    db.session.commit()
    assert _notices() == [("finished", users["alice"].id, batch.id, 0)]


def test_recovery_closes_a_drained_batch_with_one_notice(factory, users):
    batch = factory.batch(users["alice"], factory.tasks(1, starter=users["admin"]))
    runner.run_inline(batch.id)
    db.session.execute(db.delete(Notice))
    db.session.execute(db.update(Batch).where(Batch.id == batch.id).values(status="running"))
    db.session.commit()   # as if the last item's transaction could not close the batch
    assert recovery.finish_drained_batches() == 1
    assert recovery.finish_drained_batches() == 0
    assert _notices() == [("finished", users["alice"].id, batch.id, 0)]


def test_an_insert_that_loses_the_race_adds_nothing_and_keeps_the_transaction(
        monkeypatch, factory, users):
    """Both racers looked before either inserted: the unique constraint decides, without an error."""
    batch = factory.batch(users["alice"], factory.tasks(1, starter=users["admin"]))
    runner.run_inline(batch.id)
    real_execute = db.session.execute

    def nothing_found_first(statement, *args, **kwargs):
        result = real_execute(statement, *args, **kwargs)
        if getattr(statement, "is_select", False) and "FROM notice" in str(statement):
            return real_execute(db.select(Notice.id).where(db.false()))
        return result

    monkeypatch.setattr(db.session, "execute", nothing_found_first)
    assert receivers.record_event("finished", batch.id) is None
    monkeypatch.undo()
    db.session.execute(db.update(Batch).where(Batch.id == batch.id).values(comment="still usable"))
    db.session.commit()
    assert _notices() == [("finished", users["alice"].id, batch.id, 0)]
    assert db.session.get(Batch, batch.id).comment == "still usable"


def test_a_failing_notice_never_fails_the_batch(monkeypatch, factory, users):
    def broken(*_args, **_kwargs):
        raise RuntimeError("notice store broken")

    monkeypatch.setattr(records, "record", broken)
    batch = factory.batch(users["alice"], factory.tasks(2, starter=users["admin"]))
    runner.run_inline(batch.id)
    db.session.rollback()
    batch = db.session.get(Batch, batch.id)
    assert (batch.status, batch.success) == ("finished", 2)
    assert _notices() == []


def test_two_transactions_racing_on_postgresql_make_one_notice(app, factory, users):
    """The second insert waits for the first transaction, then inserts nothing; both commit."""
    if db.engine.dialect.name != "postgresql":
        pytest.skip("needs two concurrent writers (PostgreSQL)")
    batch = factory.batch(users["alice"], factory.tasks(1, starter=users["admin"]))
    runner.run_inline(batch.id)
    db.session.execute(db.delete(Notice))
    db.session.commit()
    results, errors = {}, []
    first_inserted, second_started = threading.Event(), threading.Event()

    def racer(name, before_commit):
        try:
            with app.app_context():
                if name == "second":
                    first_inserted.wait(10)
                    second_started.set()
                results[name] = receivers.record_event("finished", batch.id)
                if name == "first":
                    first_inserted.set()
                before_commit()
                db.session.commit()
        except Exception as exc:  # noqa: BLE001 - the test reports any error of either racer
            errors.append(exc)
            first_inserted.set()

    def hold_then_commit():
        second_started.wait(10)
        time.sleep(0.5)   # the second racer is now blocked on the unique index

    first = threading.Thread(target=racer, args=("first", hold_then_commit))
    second = threading.Thread(target=racer, args=("second", lambda: None))
    first.start(), second.start()
    first.join(30), second.join(30)
    assert errors == []
    assert results["first"] is not None and results["second"] is None
    assert _notices() == [("finished", users["alice"].id, batch.id, 0)]


# --- pages -------------------------------------------------------------------------------------

@pytest.fixture
def alice_notices(factory, users):
    """Two notices of alice (a finished batch, then one with errors), one of bob."""
    finished = factory.batch(users["alice"], factory.tasks(1, starter=users["admin"]))
    runner.run_inline(finished.id)
    failed = _failing_batch(factory, users, count=1)
    bobs = _failing_batch(factory, users, count=1, creator="bob")
    ids = db.session.execute(db.select(Notice.id).order_by(Notice.id)).scalars().all()
    return {"finished": finished, "failed": failed, "bobs": bobs, "ids": ids}


def test_the_badge_counts_unread_notices_and_the_list_is_newest_first(client, users, alice_notices):
    login(client, "alice")
    page = client.get("/notices").get_data(as_text=True)
    assert "data-unread-notices>2<" in page
    shown = [int(part.split('"')[0]) for part in page.split('data-notice-id="')[1:]]
    assert shown == [alice_notices["ids"][1], alice_notices["ids"][0]]   # bob's is not there
    assert alice_notices["failed"].number in page and alice_notices["bobs"].number not in page
    assert "data-unread-notices" in client.get("/").get_data(as_text=True)


def test_mark_read_needs_csrf_and_only_marks_own_notices(client, users, alice_notices):
    own, bobs = alice_notices["ids"][0], alice_notices["ids"][2]
    login(client, "alice")
    assert client.post(f"/notices/{own}/read").status_code == 400          # no CSRF token
    token = csrf_token(client, "/notices")
    assert client.post(f"/notices/{bobs}/read", data={"csrf_token": token}).status_code == 404
    assert client.post("/notices/2147483647/read", data={"csrf_token": token}).status_code == 404
    response = client.post(f"/notices/{own}/read", data={"csrf_token": token})
    assert response.status_code == 302 and response.headers["Location"] == "/notices"
    db.session.rollback()
    assert db.session.get(Notice, own).read_at is not None
    assert db.session.get(Notice, bobs).read_at is None
    assert "data-unread-notices>1<" in client.get("/notices").get_data(as_text=True)


def test_opening_a_notice_marks_it_read_and_leads_to_its_batch(client, users, alice_notices):
    own, bobs = alice_notices["ids"][1], alice_notices["ids"][2]
    login(client, "alice")
    response = client.get(f"/notices/{own}/open")
    assert response.status_code == 302
    assert response.headers["Location"] == f"/batches/{alice_notices['failed'].id}"
    assert client.get(f"/notices/{bobs}/open").status_code == 404
    db.session.rollback()
    assert db.session.get(Notice, own).read_at is not None
    assert db.session.get(Notice, bobs).read_at is None


def test_mark_all_read_marks_only_the_users_notices(client, users, alice_notices):
    login(client, "alice")
    token = csrf_token(client, "/notices")
    assert client.post("/notices/read-all").status_code == 400
    response = client.post("/notices/read-all", data={"csrf_token": token}, follow_redirects=True)
    page = response.get_data(as_text=True)
    assert "2 notices marked read." in page and "data-unread-notices" not in page
    db.session.rollback()
    assert db.session.get(Notice, alice_notices["ids"][2]).read_at is None   # bob's


def test_an_item_notice_opens_the_item_page(app, monkeypatch, client, factory, users):
    monkeypatch.setitem(app.config, "BATCH_RETRY_LIMIT", 0)
    batch = _failing_batch(factory, users, count=1)
    notice = db.session.execute(db.select(Notice).where(Notice.kind == "retry_limit")).scalar_one()
    login(client, "alice")
    page = client.get("/notices").get_data(as_text=True)
    assert "reached the retry limit" in page
    response = client.get(f"/notices/{notice.id}/open")
    assert response.headers["Location"] == f"/batches/{batch.id}/items/{notice.item_id}"


def test_the_pages_need_a_login(client, users):
    assert client.get("/notices").status_code == 302
    assert client.get("/account/notices").status_code == 302
