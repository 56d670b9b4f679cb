"""The supervisor home: what needs a person, and where a supervisor's login lands."""
from support import csrf_token, login
from portal.batches import runner
from portal.infra.extensions import db
from portal.models import BatchItem


def _failed_batch(factory, users, count=2):
    batch = factory.batch(users["alice"], factory.tasks(count, starter=users["admin"]))
    users["alice"].disabled = True
    db.session.commit()
    runner.run_inline(batch.id)
    users["alice"].disabled = False
    db.session.commit()
    return batch


def test_supervisors_land_on_what_needs_them(client, app, factory, users):
    failed = _failed_batch(factory, users)
    running = factory.batch(users["alice"], factory.tasks(1, starter=users["admin"]))
    db.session.execute(db.update(BatchItem).where(BatchItem.batch_id == failed.id).values(
        retry_count=app.config["BATCH_RETRY_LIMIT"]))
    db.session.commit()
    response = login(client, "sam")
    assert response.headers["Location"] == "/attention"
    page = client.get("/attention").get_data(as_text=True)
    failed_part = page.split('id="failed-batches"')[1].split("</section>")[0]
    active_part = page.split('id="active-batches"')[1].split("</section>")[0]
    limit_part = page.split('id="at-limit"')[1].split("</section>")[0]
    assert failed.number in failed_part and running.number not in failed_part
    assert running.number in active_part
    assert limit_part.count("data-item-id") == 2
    assert 'data-attention-count>1<' in page            # the navbar badge


def test_users_land_on_their_tasks_and_may_not_open_the_supervisor_home(client, users):
    assert login(client, "alice").headers["Location"] == "/"
    assert client.get("/attention").status_code == 403
    assert "data-attention" not in client.get("/").get_data(as_text=True)


def test_a_next_page_still_wins_over_the_home(client, users):
    token = csrf_token(client, "/login")
    response = client.post("/login?next=/batches", data={
        "username": "sam", "password": "password-123", "csrf_token": token})
    assert response.headers["Location"] == "/batches"


def test_recovery_lists_its_own_actions_not_batches_that_simply_finished(factory, users):
    from portal.batches import attention, runner
    from portal.models import BatchEvent
    tasks = factory.tasks(1, starter=users["admin"])
    batch = factory.batch(users["alice"], tasks)
    runner.run_inline(batch.id)
    db.session.add(BatchEvent(batch_id=batch.id, user_id=None, action="retried",
                              detail={"count": 1, "automatic": True}))
    db.session.commit()
    recovered = attention.overview()["recovered"]
    assert [event.action for event in recovered] == ["retried"]
