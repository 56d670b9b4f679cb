"""Notice deliveries: e-mail through a local SMTP server (aiosmtpd) in the creator's language, webhooks
to a local HTTP server with their HMAC signature, retries with a log of every attempt, never a second
send after a success, the sweep that re-enqueues what Redis lost, the user's channel choices, and the
settings page (webhook URLs, the secret shown once)."""
import email
import email.policy
import hashlib
import hmac
import json
import shutil
import socket
import ssl
import subprocess
import threading
import time
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from aiosmtpd.controller import Controller
from rq import SimpleWorker

from support import csrf_token, login, wait_for
from portal import accounts, events
from portal.batches import dispatch, runner
from portal.errors import ValidationFailed
from portal.infra import queueing
from portal.infra.extensions import db
from portal.infra.queueing import get_delivery_queue, get_queue, get_redis, worker_queues
from portal.jobs import notice_jobs as jobs
from portal.models import Batch, NoticeDelivery, NoticeDeliveryAttempt
from portal.models.base import utcnow
from portal.notices import delivery, outbox, preferences
from portal.notices.attempt import Outcome


# --- local servers -----------------------------------------------------------------------------

class WebhookReceiver:
    """A local HTTP server that records each POST and answers with the next of ``codes`` (then 200)."""

    def __init__(self, codes=()):
        self.codes, self.requests = list(codes), []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.requests.append((dict(self.headers), body))
                self.send_response(receiver.codes.pop(0) if receiver.codes else 200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *_args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self):
        return f"http://127.0.0.1:{self.server.server_address[1]}/hook"

    def close(self):
        self.server.shutdown()
        self.server.server_close()


class Inbox:
    """aiosmtpd handler keeping every message it is handed."""

    def __init__(self):
        self.messages = []

    async def handle_DATA(self, _server, _session, envelope):
        message = email.message_from_bytes(envelope.content, policy=email.policy.default)
        self.messages.append((envelope.rcpt_tos, message))
        return "250 OK"


def _free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(autouse=True)
def _allowed_networks_restored(app):
    """Every test ends with the configuration's allow-list as it found it (an autouse fixture is
    set up before, so torn down after, any monkeypatch of the test)."""
    allowed = app.config["WEBHOOK_ALLOWED_NETWORKS"]
    yield
    app.config["WEBHOOK_ALLOWED_NETWORKS"] = allowed


@pytest.fixture
def hook(app):
    # Loopback is refused by default: the receivers here are on it. (Set without monkeypatch,
    # which a test may undo for its own patches.)
    app.config["WEBHOOK_ALLOWED_NETWORKS"] = "127.0.0.0/8"
    receivers = []

    def start(codes=()):
        receivers.append(WebhookReceiver(codes))
        return receivers[-1]

    yield start
    for receiver in receivers:
        receiver.close()


@pytest.fixture
def inbox(app, monkeypatch):
    box = Inbox()
    port = _free_port()
    controller = Controller(box, hostname="127.0.0.1", port=port)
    controller.start()
    monkeypatch.setitem(app.config, "MAIL_SERVER", "127.0.0.1")
    monkeypatch.setitem(app.config, "MAIL_PORT", port)
    monkeypatch.setitem(app.config, "MAIL_SENDER", "portal@example.com")
    monkeypatch.setitem(app.config, "PORTAL_URL", "https://portal.example.com")
    yield box
    controller.stop()


@pytest.fixture
def fast_retries(monkeypatch):
    """Retries due at once, so one burst of a worker goes through every attempt."""
    monkeypatch.setattr(delivery, "BACKOFF_BASE_SECONDS", 0)


def run_jobs():
    """Run every queued job in this process (a burst of an RQ worker of every queue)."""
    db.session.rollback()
    SimpleWorker(worker_queues("all"), connection=get_redis()).work(burst=True)
    db.session.rollback()


def _finished_batch(factory, users, creator="alice", fail=False):
    batch = factory.batch(users[creator], factory.tasks(1, starter=users["admin"]))
    if fail:
        users[creator].disabled = True
        db.session.commit()
    runner.run_inline(batch.id)
    users[creator].disabled = False
    db.session.commit()
    return batch


def _endpoint(user, url, token_id=None):
    endpoint = preferences.add_endpoint(user, url, token_id)
    db.session.commit()
    return endpoint


def _deliveries():
    db.session.rollback()
    return db.session.execute(db.select(NoticeDelivery).order_by(NoticeDelivery.id)).scalars().all()


def _attempts(delivery_id):
    return [(a.attempt, a.outcome, a.response_code) for a in db.session.execute(
        db.select(NoticeDeliveryAttempt).where(NoticeDeliveryAttempt.delivery_id == delivery_id)
        .order_by(NoticeDeliveryAttempt.id)).scalars()]


# --- webhooks ------------------------------------------------------------------------------------

def test_a_webhook_is_signed_retried_after_a_500_and_never_sent_again(
        app, fast_retries, hook, factory, users):
    receiver = hook(codes=[500])
    endpoint = _endpoint(users["alice"], receiver.url)
    batch = _finished_batch(factory, users)
    run_jobs()

    assert len(receiver.requests) == 2
    sent = _deliveries()
    assert [(d.channel, d.status, d.attempts) for d in sent] == [("webhook", "delivered", 2)]
    assert _attempts(sent[0].id) == [(1, "error", 500), (2, "delivered", 200)]
    for headers, body in receiver.requests:
        expected = "sha256=" + hmac.new(endpoint.secret.encode(), body, hashlib.sha256).hexdigest()
        assert headers["X-Portal-Signature"] == expected
        assert headers["X-Portal-Delivery"] == str(sent[0].id)
    assert receiver.requests[0][1] == receiver.requests[1][1]      # a retry sends the same bytes
    payload = json.loads(receiver.requests[1][1])
    assert set(payload) == {"event", "batch", "item_id", "at"}
    assert payload["event"] == "finished" and payload["item_id"] is None
    assert payload["batch"]["id"] == batch.id and payload["batch"]["status"] == "finished"
    assert payload["batch"]["created_by"] == "alice" and payload["at"].endswith("Z")

    # Delivered: another job of it (a duplicate, the sweep) sends nothing.
    assert jobs.deliver(sent[0].id) == "skipped"
    assert jobs.sweep_deliveries(utcnow() + timedelta(hours=1)) == 0
    run_jobs()
    assert len(receiver.requests) == 2


def test_a_claimed_delivery_is_not_sent_twice_at_once_and_a_late_success_settles_it(
        app, hook, factory, users):
    receiver = hook()
    _endpoint(users["alice"], receiver.url)
    _finished_batch(factory, users)
    (planned,) = _deliveries()
    now = utcnow()
    first = delivery.claim(planned.id, now)
    assert first.attempt == 1
    assert delivery.claim(planned.id, now + timedelta(seconds=1)) is None   # held by the first
    # The first attempt's worker froze past its claim: the delivery is taken again...
    later = now + timedelta(seconds=delivery.claim_seconds() + 1)
    second = delivery.claim(planned.id, later)
    assert second.attempt == 2 and second.body == first.body
    # ...the frozen attempt wakes up having delivered: it settles the delivery...
    assert delivery.finish(first, Outcome(True, 200), later) is None
    # ...and the second attempt's failure changes nothing any more.
    assert delivery.finish(second, Outcome(False, 500, "HTTP 500"), later) is None
    (settled,) = _deliveries()
    assert settled.status == "delivered"
    assert _attempts(settled.id) == [(1, "delivered", 200), (2, "error", 500)]
    assert delivery.claim(settled.id, later + timedelta(days=1)) is None


def test_a_webhook_gives_up_after_the_last_attempt(app, monkeypatch, fast_retries, hook, factory, users):
    monkeypatch.setitem(app.config, "WEBHOOK_MAX_ATTEMPTS", 3)
    receiver = hook(codes=[500, 502, 503, 200])
    _endpoint(users["alice"], receiver.url)
    _finished_batch(factory, users)
    run_jobs()
    (sent,) = _deliveries()
    assert (sent.status, sent.attempts, sent.last_error) == ("failed", 3, "HTTP 503")
    assert _attempts(sent.id) == [(1, "error", 500), (2, "error", 502), (3, "error", 503)]
    assert len(receiver.requests) == 3


def test_a_failed_attempt_is_scheduled_with_backoff(app, hook, factory, users):
    receiver = hook(codes=[500])
    _endpoint(users["alice"], receiver.url)
    _finished_batch(factory, users)
    (planned,) = _deliveries()
    assert jobs.deliver(planned.id) == "retry"
    (waiting,) = _deliveries()
    assert waiting.status == "pending" and waiting.attempts == 1
    wait = (waiting.next_attempt_at - utcnow()).total_seconds()
    assert delivery.BACKOFF_BASE_SECONDS - 5 < wait <= delivery.BACKOFF_BASE_SECONDS
    assert outbox.job_id(waiting.id, 2) in get_delivery_queue().scheduled_job_registry.get_job_ids()
    assert jobs.deliver(waiting.id) == "skipped"      # too early: nothing is sent
    assert len(receiver.requests) == 1
    assert delivery.backoff_seconds(3) == 4 * delivery.BACKOFF_BASE_SECONDS


def test_a_webhook_that_cannot_be_reached_is_logged(app, fast_retries, factory, users, monkeypatch):
    monkeypatch.setitem(app.config, "WEBHOOK_MAX_ATTEMPTS", 1)
    monkeypatch.setitem(app.config, "WEBHOOK_ALLOWED_NETWORKS", "127.0.0.0/8")
    _endpoint(users["alice"], f"http://127.0.0.1:{_free_port()}/nobody")
    _finished_batch(factory, users)
    run_jobs()
    (sent,) = _deliveries()
    assert sent.status == "failed" and "ConnectionError" in sent.last_error
    login_client = app.test_client()
    login(login_client, "alice")
    page = login_client.get("/account/notices").get_data(as_text=True)
    assert f'data-delivery-id="{sent.id}" data-attempt="1" data-outcome="error"' in page


# --- e-mail ----------------------------------------------------------------------------------------

def test_an_email_goes_out_in_the_creators_language(app, inbox, factory, users):
    users["alice"].locale = "zh_CN"
    preferences.save_preference(users["alice"], True, "alice@example.com", False)
    preferences.save_preference(users["bob"], True, "bob@example.com", False)
    db.session.commit()
    chinese = _finished_batch(factory, users, fail=True)
    english = _finished_batch(factory, users, creator="bob")   # bob's own: its items are ignored
    run_jobs()

    assert sorted(rcpt for rcpt, _m in inbox.messages) == [["alice@example.com"], ["bob@example.com"]]
    to_alice = next(m for rcpt, m in inbox.messages if rcpt == ["alice@example.com"])
    to_bob = next(m for rcpt, m in inbox.messages if rcpt == ["bob@example.com"])
    alice_text, bob_text = to_alice.get_content(), to_bob.get_content()
    assert "状态: 已完成（有错误）" in alice_text and "Status" not in alice_text
    assert "Status: Finished" in bob_text and "状态" not in bob_text
    assert f"https://portal.example.com/batches/{chinese.id}" in alice_text
    assert f"https://portal.example.com/batches/{english.id}" in bob_text
    assert chinese.number in to_alice["Subject"] and to_alice["From"] == "portal@example.com"
    assert {d.status for d in _deliveries()} == {"delivered"}
    assert all(_attempts(d.id) == [(1, "delivered", 250)] for d in _deliveries())


def test_no_email_without_a_mail_server(app, factory, users):
    assert not app.config["MAIL_SERVER"]
    preferences.save_preference(users["alice"], True, "alice@example.com", True)
    db.session.commit()
    _finished_batch(factory, users)
    assert _deliveries() == []


def test_an_email_is_retried_when_the_server_is_down(app, monkeypatch, fast_retries, inbox, factory, users):
    preferences.save_preference(users["alice"], True, "alice@example.com", False)
    db.session.commit()
    port = app.config["MAIL_PORT"]
    monkeypatch.setitem(app.config, "MAIL_PORT", _free_port())   # nobody listens there
    _finished_batch(factory, users)
    (planned,) = _deliveries()
    assert jobs.deliver(planned.id) == "retry"
    monkeypatch.setitem(app.config, "MAIL_PORT", port)
    run_jobs()
    (sent,) = _deliveries()
    assert sent.status == "delivered"
    assert [(n, outcome) for n, outcome, _code in _attempts(sent.id)] == [(1, "error"), (2, "delivered")]
    assert len(inbox.messages) == 1


# --- channels the user chose --------------------------------------------------------------------

def test_deliveries_follow_the_users_choices(app, inbox, hook, factory, users):
    receiver = hook()
    _endpoint(users["alice"], receiver.url)
    removed = _endpoint(users["alice"], receiver.url + "/old")
    preferences.remove_endpoint(users["alice"], removed.id)
    row, _token = accounts.create_token(users["alice"], "ci")
    _endpoint(users["alice"], receiver.url + "/ci", token_id=row.id)
    accounts.revoke_token(row.id)
    db.session.commit()

    # Defaults: webhooks on (live endpoints only), no e-mail.
    _finished_batch(factory, users)
    assert [(d.channel, d.target) for d in _deliveries()] == [("webhook", receiver.url)]

    # E-mail on, webhooks off.
    preferences.save_preference(users["alice"], True, "alice@example.com", False)
    db.session.commit()
    _finished_batch(factory, users)
    assert [(d.channel, d.target) for d in _deliveries()][1:] == [("email", "alice@example.com")]

    # Switched off after the event and before the attempt: skipped, nothing sent.
    preferences.save_preference(users["alice"], False, "alice@example.com", False)
    db.session.commit()
    run_jobs()
    assert [d.status for d in _deliveries()] == ["skipped", "skipped"]
    assert receiver.requests == [] and inbox.messages == []


def test_webhook_urls_must_be_http_or_https(users):
    for url in ("ftp://example.com/x", "javascript:alert(1)", "file:///etc/passwd", "https://",
                "http://user:pw@example.com/", "http://exa mple.com/", "gopher://x", "",
                "http://example.com:99999999/"):
        with pytest.raises(ValidationFailed) as refused:
            preferences.add_endpoint(users["alice"], url)
        assert "url" in refused.value.errors, url
    assert preferences.add_endpoint(users["alice"], "https://hooks.example.com/portal?x=1").id


# --- Redis lost the job ---------------------------------------------------------------------------

def test_the_sweep_enqueues_what_could_not_be_enqueued(app, monkeypatch, hook, factory, users):
    receiver = hook()
    _endpoint(users["alice"], receiver.url)

    def redis_down(*_args, **_kwargs):
        raise ConnectionError("Redis is down")

    monkeypatch.setattr(queueing, "get_delivery_queue", redis_down)
    _finished_batch(factory, users)
    monkeypatch.undo()
    assert _delivery_jobs() == []
    (planned,) = _deliveries()
    assert planned.status == "pending"
    assert jobs.sweep_deliveries() == 0                      # not due long enough yet
    later = utcnow() + jobs.SWEEP_GRACE + timedelta(seconds=1)
    assert jobs.sweep_deliveries(later) == 1
    assert jobs.sweep_deliveries(later) == 0                 # its job waits in Redis
    run_jobs()
    assert len(receiver.requests) == 1 and _deliveries()[0].status == "delivered"


def test_deliveries_are_enqueued_only_when_the_event_commits(app, hook, factory, users):
    receiver = hook()
    _endpoint(users["alice"], receiver.url)
    batch = factory.batch(users["alice"], factory.tasks(1, starter=users["admin"]))
    events.batch_cancelled.send(db.session.get(Batch, batch.id))
    assert len(_pending_delivery_ids()) == 1 and _delivery_jobs() == []   # not before the commit
    db.session.rollback()
    db.session.commit()   # a later commit of the same session enqueues nothing either
    assert _delivery_jobs() == [] and _deliveries() == []

    events.batch_cancelled.send(db.session.get(Batch, batch.id))
    assert _delivery_jobs() == []
    db.session.commit()
    (planned,) = _deliveries()
    assert _delivery_jobs() == [outbox.job_id(planned.id, 1)]


def _pending_delivery_ids():
    return db.session.info.get(queueing.SESSION_KEY, [])


def _delivery_jobs():
    return [job_id for job_id in get_delivery_queue().get_job_ids()
            if job_id.startswith("notice-delivery-")]


# --- the settings page ----------------------------------------------------------------------------

def test_the_settings_page_adds_shows_the_secret_once_and_removes_webhooks(client, hook, users):
    receiver = hook()
    login(client, "alice")
    token = csrf_token(client, "/account/notices")
    refused = client.post("/account/notices/webhooks", data={"csrf_token": token, "url": "ftp://x.example/"})
    assert refused.status_code == 400 and "Only http and https URLs are accepted." in refused.get_data(as_text=True)
    assert client.post("/account/notices/webhooks", data={"url": receiver.url}).status_code == 400

    created = client.post("/account/notices/webhooks", data={"csrf_token": token, "url": receiver.url})
    assert created.status_code == 200
    (endpoint,) = preferences.endpoints_of(users["alice"])
    assert endpoint.secret in created.get_data(as_text=True)
    again = client.get("/account/notices").get_data(as_text=True)
    assert receiver.url in again and endpoint.secret not in again

    # bob may not remove alice's webhook.
    other = app_client_for(client, "bob")
    assert other.post(f"/account/notices/webhooks/{endpoint.id}/remove",
                      data={"csrf_token": csrf_token(other, "/account/notices")}).status_code == 404
    assert client.post(f"/account/notices/webhooks/{endpoint.id}/remove").status_code == 400
    removed = client.post(f"/account/notices/webhooks/{endpoint.id}/remove", data={"csrf_token": token})
    assert removed.status_code == 302
    db.session.rollback()
    assert preferences.endpoints_of(users["alice"]) == []


def app_client_for(client, username):
    other = client.application.test_client()
    login(other, username)
    return other


def test_the_settings_page_saves_channels(client, users):
    login(client, "alice")
    token = csrf_token(client, "/account/notices")
    bad = client.post("/account/notices/channels", data={"csrf_token": token, "email_enabled": "y",
                                                         "email_address": "not an address"})
    assert bad.status_code == 400
    assert preferences.preference_of(users["alice"].id).email_enabled is False
    good = client.post("/account/notices/channels", data={"csrf_token": token, "email_enabled": "y",
                                                          "email_address": "alice@example.com"})
    assert good.status_code == 302
    db.session.rollback()
    saved = preferences.preference_of(users["alice"].id)
    assert (saved.email_enabled, saved.email_address, saved.webhook_enabled) == (
        True, "alice@example.com", False)


# --- real workers ------------------------------------------------------------------------------

def test_a_worker_process_records_the_notice_and_posts_the_webhook(app, workers, hook, factory, users):
    receiver = hook()
    endpoint = _endpoint(users["alice"], receiver.url)
    batch = factory.batch(users["alice"], factory.tasks(3, starter=users["admin"]))
    dispatch.start(batch)
    workers.start(1, extra_env={"WEBHOOK_ALLOWED_NETWORKS": "127.0.0.0/8"})
    wait_for(lambda: receiver.requests, timeout=60, message="the webhook")
    headers, body = receiver.requests[0]
    assert headers["X-Portal-Signature"] == "sha256=" + hmac.new(
        endpoint.secret.encode(), body, hashlib.sha256).hexdigest()
    assert json.loads(body)["batch"]["success"] == 3
    wait_for(lambda: _deliveries()[0].status == "delivered", timeout=30, message="delivered")
    assert len(receiver.requests) == 1


# --- a slow receiver, the attempt limit, the queue of their own ----------------------------------

LOOPBACK = "127.0.0.0/8"


class DripServer:
    """A loopback server that reads a request, then answers its status line and headers one byte a
    ``interval`` seconds: every read gets its byte well within a per-read timeout. It drips for
    ``limit`` seconds at most per connection, serves for ``life`` seconds at most, then stops."""

    ANSWER = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nX-Slow: " + b"x" * 40 + b"\r\n\r\n"

    def __init__(self, interval=1.0, limit=8.0, life=30.0):
        self.interval, self.limit, self.life = interval, limit, life
        self.connections, self.sent = 0, 0
        self.stopping = threading.Event()
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(4)
        self.sock.settimeout(0.2)
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    @property
    def url(self):
        return f"http://127.0.0.1:{self.sock.getsockname()[1]}/slow"

    def _serve(self):
        end = time.monotonic() + self.life
        while not self.stopping.is_set() and time.monotonic() < end:
            try:
                conn, _address = self.sock.accept()
            except OSError:
                continue
            self.connections += 1
            with conn:
                self._drip(conn)

    def _drip(self, conn):
        started = time.monotonic()
        conn.settimeout(1)
        try:
            conn.recv(65536)
        except OSError:
            return
        for byte in self.ANSWER:       # a bounded number of bytes...
            if self.stopping.is_set() or time.monotonic() - started > self.limit:
                return                 # ...for a bounded time
            time.sleep(self.interval)
            try:
                conn.sendall(bytes([byte]))
            except OSError:
                return                 # the portal hung up
            self.sent += 1

    def close(self):
        self.stopping.set()
        self.thread.join(timeout=5)
        self.sock.close()


@pytest.fixture
def drip():
    servers = []

    def start(**options):
        servers.append(DripServer(**options))
        return servers[-1]

    yield start
    for server in servers:
        server.close()


@pytest.fixture
def loopback_allowed(app, monkeypatch):
    monkeypatch.setitem(app.config, "WEBHOOK_ALLOWED_NETWORKS", LOOPBACK)


def test_a_receiver_that_drips_its_answer_is_cut_off_at_the_deadline(
        app, monkeypatch, loopback_allowed, drip, factory, users):
    monkeypatch.setitem(app.config, "WEBHOOK_TIMEOUT_SECONDS", 2)
    server = drip()
    _endpoint(users["alice"], server.url)
    _finished_batch(factory, users)
    (planned,) = _deliveries()
    started = time.monotonic()
    assert jobs.deliver(planned.id) == "retry"
    took = time.monotonic() - started
    assert took < 2 + 1.5, f"the attempt took {took:.1f} s"   # the whole attempt, not one read
    assert 0 < server.sent < len(DripServer.ANSWER)
    (waiting,) = _deliveries()
    assert (waiting.status, waiting.attempts) == ("pending", 1)
    assert _attempts(waiting.id) == [(1, "error", None)]
    assert "Timeout" in waiting.last_error


def test_a_delivery_job_is_timed_from_the_deadline_and_its_claim_outlives_it(
        app, monkeypatch, hook, factory, users):
    from rq.job import Job
    monkeypatch.setitem(app.config, "WEBHOOK_TIMEOUT_SECONDS", 2)
    monkeypatch.setitem(app.config, "WEBHOOK_ALLOWED_NETWORKS", LOOPBACK)
    _endpoint(users["alice"], hook().url)
    _finished_batch(factory, users)
    (planned,) = _deliveries()
    job = Job.fetch(outbox.job_id(planned.id, 1), connection=get_redis())
    assert 2 <= job.timeout <= 2 + 60
    # RQ kills a work-horse that outlives its job's timeout 60 s later (it looks every 30 s): a
    # claim must last longer, or a second attempt could start while the first still sends.
    assert delivery.claim_seconds() > job.timeout + 60 + 30


def test_an_attempt_whose_job_died_counts_and_the_limit_holds(app, monkeypatch, hook, factory, users):
    monkeypatch.setitem(app.config, "WEBHOOK_MAX_ATTEMPTS", 2)
    monkeypatch.setitem(app.config, "WEBHOOK_ALLOWED_NETWORKS", LOOPBACK)
    receiver = hook()
    _endpoint(users["alice"], receiver.url)
    _finished_batch(factory, users)
    (planned,) = _deliveries()
    now, numbers = utcnow(), []
    for _ in range(5):   # each job is killed after its claim: it never reaches its finish
        claimed = delivery.claim(planned.id, now)
        if claimed is not None:
            numbers.append(claimed.attempt)
        now += timedelta(seconds=delivery.claim_seconds() + 1)
    assert numbers == [1, 2]
    (given_up,) = _deliveries()
    assert (given_up.status, given_up.attempts, given_up.claim_token) == ("failed", 2, None)
    assert _attempts(given_up.id) == [(2, "error", None)]     # the last attempt, which never ended
    assert jobs.deliver(given_up.id) == "skipped"
    assert jobs.due_deliveries(now + timedelta(days=1)) == []  # the sweep has nothing left to send
    assert receiver.requests == []


def test_deliveries_wait_on_a_queue_of_their_own_after_the_batch_work(app, hook, factory, users):
    from portal import launcher
    _endpoint(users["alice"], hook().url)
    _finished_batch(factory, users)
    (planned,) = _deliveries()
    job_id = outbox.job_id(planned.id, 1)
    assert job_id in get_delivery_queue().get_job_ids()
    assert job_id not in get_queue().get_job_ids()
    # A batch worker's burst never runs a delivery...
    SimpleWorker(worker_queues("batches"), connection=get_redis()).work(burst=True)
    assert _deliveries()[0].status == "pending"
    # ...a worker of every queue takes the batch work first, then the deliveries...
    assert [q.name for q in worker_queues("all")] == [get_queue().name, get_delivery_queue().name]
    # ...and `make run` starts a worker for the deliveries besides the batch workers.
    children = dict(launcher._children({}, 5000, 2))

    def queue_of(argv):
        return argv[argv.index("--queue") + 1] if "--queue" in argv else "all"

    batch_workers = [argv for name, argv in children.items() if name.startswith("worker-")]
    assert [queue_of(argv) for argv in batch_workers] == ["batches", "batches"]
    assert "worker" in children["deliveries"] and queue_of(children["deliveries"]) == "deliveries"


# --- addresses a webhook may not reach -------------------------------------------------------------

LOCAL_URLS = (
    "http://127.0.0.1/", "http://localhost:5000/metrics", "http://0x7f000001/", "http://127.1/",
    "http://[::ffff:127.0.0.1]/", "http://0/", "http://2130706433/", "http://%31%32%37.0.0.1/",
    "http://0177.0.0.1/", "http://[::1]:8080/", "http://0.0.0.0/", "http://10.1.2.3/",
    "http://172.16.0.1/", "http://192.168.1.10/", "http://169.254.169.254/latest/meta-data/",
    "http://100.64.0.1/", "http://[fe80::1]/", "http://[fd00::1]/", "http://224.0.0.1/",
    "http://255.255.255.255/", "http://[2002:7f00:1::]/", "http://[64:ff9b::7f00:1]/",
    "https://127.0.0.1:5000/metrics",
)


def test_webhook_urls_on_loopback_private_or_local_addresses_are_refused(app, monkeypatch, users):
    for url in LOCAL_URLS:
        with pytest.raises(ValidationFailed) as refused:
            preferences.add_endpoint(users["alice"], url)
        assert "url" in refused.value.errors, url
    # A company whose receivers are internal allows their networks, and those only.
    monkeypatch.setitem(app.config, "WEBHOOK_ALLOWED_NETWORKS", "127.0.0.0/8, 10.1.0.0/16")
    for url in ("http://127.0.0.1:9000/hook", "http://10.1.2.3/hook", "http://[::ffff:127.0.0.1]/"):
        assert preferences.add_endpoint(users["alice"], url).id, url
    for url in ("http://10.2.0.1/", "http://192.168.1.10/", "http://0.0.0.0/", "http://[::1]/",
                "http://%31%32%37.0.0.1/"):
        with pytest.raises(ValidationFailed):
            preferences.add_endpoint(users["alice"], url)
    db.session.rollback()


def test_the_allowed_networks_come_from_the_environment(monkeypatch, tmp_path):
    from config import Config
    monkeypatch.delenv("WEBHOOK_ALLOWED_NETWORKS", raising=False)
    assert Config.from_env(str(tmp_path))["WEBHOOK_ALLOWED_NETWORKS"] == ""
    monkeypatch.setenv("WEBHOOK_ALLOWED_NETWORKS", "10.0.0.0/8 192.168.0.0/16,fd00::/8")
    assert Config.from_env(str(tmp_path))["WEBHOOK_ALLOWED_NETWORKS"] == (
        "10.0.0.0/8 192.168.0.0/16,fd00::/8")
    monkeypatch.setenv("WEBHOOK_ALLOWED_NETWORKS", "10.0.0.0/8, intranet")
    with pytest.raises(ValueError, match="WEBHOOK_ALLOWED_NETWORKS"):
        Config.from_env(str(tmp_path))


def _register_behind_the_check(user, url):
    """An endpoint stored as an older portal (or a name that resolved elsewhere then) left it."""
    from portal.models import WebhookEndpoint
    endpoint = WebhookEndpoint(user_id=user.id, url=url, secret="s" * 64, created_at=utcnow())
    db.session.add(endpoint)
    db.session.commit()
    return endpoint


def test_a_stored_url_on_loopback_is_refused_when_it_is_sent(app, monkeypatch, hook, factory, users):
    monkeypatch.setitem(app.config, "WEBHOOK_MAX_ATTEMPTS", 1)
    receiver = hook()
    monkeypatch.setitem(app.config, "WEBHOOK_ALLOWED_NETWORKS", "")   # the default
    _register_behind_the_check(users["alice"], receiver.url)
    _finished_batch(factory, users)
    run_jobs()
    (refused,) = _deliveries()
    assert refused.status == "failed" and receiver.requests == []
    assert "RefusedAddress" in refused.last_error


def test_a_name_that_resolves_to_loopback_when_sent_is_refused(app, monkeypatch, hook, factory, users):
    monkeypatch.setitem(app.config, "WEBHOOK_MAX_ATTEMPTS", 1)
    receiver = hook()
    monkeypatch.setitem(app.config, "WEBHOOK_ALLOWED_NETWORKS", "")   # the default
    port = receiver.server.server_address[1]
    _endpoint(users["alice"], f"http://rebound.example:{port}/hook")   # no address yet: accepted
    real_getaddrinfo = socket.getaddrinfo

    def rebound(host, *args, **kwargs):   # the name's owner points it at the portal's host now
        return real_getaddrinfo("127.0.0.1" if host == "rebound.example" else host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", rebound)
    _finished_batch(factory, users)
    run_jobs()
    (refused,) = _deliveries()
    assert refused.status == "failed" and receiver.requests == []


def test_a_delivery_connects_to_the_address_it_checked_and_names_the_host(
        app, monkeypatch, hook, factory, users):
    monkeypatch.setitem(app.config, "WEBHOOK_ALLOWED_NETWORKS", LOOPBACK)
    monkeypatch.setitem(app.config, "WEBHOOK_TIMEOUT_SECONDS", 2)
    receiver = hook()
    port = receiver.server.server_address[1]
    _endpoint(users["alice"], f"http://pinned.example:{port}/hook")
    real_getaddrinfo = socket.getaddrinfo
    lookups = []

    def rebinding(host, *args, **kwargs):   # the first answer is checked; a second would differ
        if host != "pinned.example":
            return real_getaddrinfo(host, *args, **kwargs)
        lookups.append(host)
        return real_getaddrinfo("127.0.0.1" if len(lookups) == 1 else "192.0.2.1", *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", rebinding)
    _finished_batch(factory, users)
    run_jobs()
    assert _deliveries()[0].status == "delivered" and len(lookups) == 1
    (headers, _body), = receiver.requests
    assert headers["Host"] == f"pinned.example:{port}"


def test_the_delivery_log_says_only_could_not_be_delivered(
        app, client, monkeypatch, caplog, drip, factory, users):
    monkeypatch.setitem(app.config, "WEBHOOK_ALLOWED_NETWORKS", LOOPBACK)
    monkeypatch.setitem(app.config, "WEBHOOK_TIMEOUT_SECONDS", 2)
    monkeypatch.setitem(app.config, "WEBHOOK_MAX_ATTEMPTS", 1)
    _endpoint(users["alice"], f"http://127.0.0.1:{_free_port()}/closed")   # a closed port
    _endpoint(users["alice"], drip().url)                                    # a timeout
    _register_behind_the_check(users["alice"], "http://10.255.255.1/")       # a refused address
    _finished_batch(factory, users)
    with caplog.at_level("INFO"):
        run_jobs()
    assert [d.status for d in _deliveries()] == ["failed"] * 3
    login(client, "alice")
    page = client.get("/account/notices").get_data(as_text=True)
    assert page.count("could not be delivered") == 3
    for detail in ("Errno", "refused", "Refused", "Timeout", "timed out", "ConnectionError",
                   "10.255.255.1 is", "Connection"):
        assert detail not in page.split('id="delivery-log"')[1], detail
    # The details are the operators', in the server log.
    logged = caplog.text
    assert "ConnectionError" in logged and "Timeout" in logged and "RefusedAddress" in logged


# --- the secret -------------------------------------------------------------------------------------

def test_a_new_secret_is_never_cached_and_can_be_rotated(app, client, monkeypatch, hook, factory, users):
    monkeypatch.setitem(app.config, "WEBHOOK_ALLOWED_NETWORKS", LOOPBACK)
    receiver = hook()
    login(client, "alice")
    token = csrf_token(client, "/account/notices")
    created = client.post("/account/notices/webhooks", data={"csrf_token": token, "url": receiver.url})
    assert created.status_code == 200 and "no-store" in created.headers.get("Cache-Control", "")
    (endpoint,) = preferences.endpoints_of(users["alice"])
    old_secret = endpoint.secret
    rotate = f"/account/notices/webhooks/{endpoint.id}/secret"

    assert client.post(rotate).status_code == 400                              # no CSRF token
    other = app_client_for(client, "bob")
    assert other.post(rotate, data={"csrf_token": csrf_token(other, "/account/notices")}
                      ).status_code == 404                                     # not bob's
    db.session.rollback()
    assert db.session.get(type(endpoint), endpoint.id).secret == old_secret

    rotated = client.post(rotate, data={"csrf_token": token})
    assert rotated.status_code == 200 and "no-store" in rotated.headers.get("Cache-Control", "")
    db.session.rollback()
    new_secret = db.session.get(type(endpoint), endpoint.id).secret
    assert new_secret != old_secret and new_secret in rotated.get_data(as_text=True)
    assert new_secret not in client.get("/account/notices").get_data(as_text=True)  # shown once

    _finished_batch(factory, users)
    run_jobs()
    (headers, body), = receiver.requests
    assert headers["X-Portal-Signature"] == webhook_signature(body, new_secret)
    assert headers["X-Portal-Signature"] != webhook_signature(body, old_secret)


def webhook_signature(body, secret):
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


# --- https to the pinned address ---------------------------------------------------------------------

def _test_certificates(folder, host):
    """A certificate authority and a certificate for ``host`` signed by it (openssl CLI)."""
    if shutil.which("openssl") is None:
        pytest.skip("needs the openssl command")

    def run(*args):
        subprocess.run(["openssl", *args], cwd=folder, check=True, capture_output=True, timeout=60)

    run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.pem",
        "-days", "2", "-subj", "/CN=Portal test CA", "-addext", "basicConstraints=critical,CA:TRUE",
        "-addext", "keyUsage=critical,keyCertSign,cRLSign")
    run("req", "-newkey", "rsa:2048", "-nodes", "-keyout", "host.key", "-out", "host.csr",
        "-subj", f"/CN={host}")
    (folder / "host.ext").write_text(f"subjectAltName=DNS:{host}\n")
    run("x509", "-req", "-in", "host.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
        "-out", "host.pem", "-days", "2", "-extfile", "host.ext")
    return folder / "ca.pem", folder / "host.pem", folder / "host.key"


def test_https_goes_to_the_checked_address_with_the_host_name_for_sni_and_the_certificate(
        app, monkeypatch, hook, factory, users, tmp_path):
    from portal.notices import transport
    ca, cert, key = _test_certificates(tmp_path, "tls.example")
    monkeypatch.setattr(transport, "CA_FILE", str(ca))
    monkeypatch.setitem(app.config, "WEBHOOK_TIMEOUT_SECONDS", 5)
    receiver = hook()
    server_names = []
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    context.sni_callback = lambda _sock, name, _context: server_names.append(name)
    receiver.server.socket = context.wrap_socket(receiver.server.socket, server_side=True)
    port = receiver.server.server_address[1]
    _endpoint(users["alice"], f"https://tls.example:{port}/hook")
    _endpoint(users["alice"], f"https://other.example:{port}/hook")   # not the certificate's name
    real_getaddrinfo = socket.getaddrinfo

    def names_on_loopback(host, *args, **kwargs):
        known = host in ("tls.example", "other.example")
        return real_getaddrinfo("127.0.0.1" if known else host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", names_on_loopback)
    monkeypatch.setitem(app.config, "WEBHOOK_MAX_ATTEMPTS", 1)
    _finished_batch(factory, users)
    run_jobs()
    good, wrong_name = _deliveries()
    assert good.status == "delivered" and wrong_name.status == "failed"
    assert "TLSError" in wrong_name.last_error
    (headers, _body), = receiver.requests
    assert headers["Host"] == f"tls.example:{port}"
    assert server_names[:1] == ["tls.example"] and "other.example" in server_names
