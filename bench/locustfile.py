"""What one person does in the portal's pages, for Locust (run by ``bench/load_test.py``).

    locust --headless -f bench/locustfile.py --host http://127.0.0.1:PORT --users N ...

Each simulated user logs in through the login form with its own account (``LOAD_USER_PREFIX`` + a
three-digit number, 001, 002, ... in the order Locust starts them; password ``LOAD_PASSWORD``) and then,
a few seconds apart, does what a browser user does (each once first, then at random by weight):

- looks at **My tasks** (``GET /``);
- approves one task: My tasks filtered to its node and to titles containing "Single", the task page,
  the task page's decision form (with its CSRF token), then the page the redirect leads to;
- starts a small batch: My tasks filtered to titles containing "Batch", ticks ``LOAD_BATCH_SIZE`` rows
  without a badge, the batch form (``/batches/new``), confirms it, lands on the batch page and watches it
  the way ``static/js/batches.js`` does: ``GET /batches/<id>/progress`` every 1.5 s while ``active``,
  then reloads the page;
- opens its latest batch from the batches list and watches it the same way while it runs.

Each account has its own pending tasks (``load_test.py`` seeds them), the ones for single approvals
titled "Single ..." and the ones for batches "Batch ...", so users never collide and a user's single
approval never picks a task its own batch holds.

Requests are named by page kind (the Name column of Locust's statistics). A page that answers with
something other than what the browser would get (a 4xx/5xx, a login form again, a decision sent back
with errors, a conflict redirect, a batch that ends with failed items) is a failure. Two names are no
pages: "small batch done" is the time from confirming a small batch until its page says it stopped (a
failure when it still runs after ``LOAD_WATCH_SECONDS``), and "no task left" a failure saying that an
account ran out of seeded tasks (the run needs more).

This file runs only inside Locust (gevent): the orchestrator never imports it.
"""
import itertools
import os
import random
import re
import time
from urllib.parse import urlencode, urlsplit

from locust import FastHttpUser, between, task

USER_PREFIX = os.environ.get("LOAD_USER_PREFIX", "load")
PASSWORD = os.environ.get("LOAD_PASSWORD", "load-pass-123")
ACCOUNTS = int(os.environ.get("LOAD_ACCOUNTS", "1000"))
BATCH_SIZE = int(os.environ.get("LOAD_BATCH_SIZE", "3"))
# How long a user watches a batch page before leaving it.
WATCH_SECONDS = float(os.environ.get("LOAD_WATCH_SECONDS", "60"))
POLL_SECONDS = 1.5          # batches.js: POLL_MS
# The load process's form (``load_test.LOAD_BPMN``): the values a user types into it.
FORM = {"amount": "10", "category": "Travel"}

FORM_HEADERS = {"Content-Type": "application/x-www-form-urlencoded"}
JSON_HEADERS = {"Accept": "application/json"}

CSRF = re.compile(r'name="csrf_token"[^>]*value="([^"]+)"')
TASK_ROW = re.compile(r'<tr data-task-id="(\d+)">(.*?)</tr>', re.S)
NODE_LINK = re.compile(r'data-pick-node="(\d+)"|data-node-id="(\d+)"')
BATCH_LINK = re.compile(r'href="/batches/(\d+)"')
BATCH_ID = re.compile(r"^/batches/(\d+)$")
ELIGIBLE = re.compile(r'data-eligible="(\d+)"')

_numbers = itertools.count(1)


def _csrf(page):
    found = CSRF.search(page)
    return found.group(1) if found else None


def _path(location):
    """The path of a redirect's Location (absolute or not)."""
    return urlsplit(location or "").path


class PortalUser(FastHttpUser):
    """One person with an account of their own, working through the pages."""

    wait_time = between(1, 3)   # a busy person: a page every 1-3 s

    def on_start(self):
        number = next(_numbers)
        if number > ACCOUNTS:
            raise RuntimeError(f"only {ACCOUNTS} accounts were seeded; start fewer users")
        self.username = f"{USER_PREFIX}{number:03d}"
        self.node_id = None
        self.log_in()
        # A first round of each action, a think time apart, so that even a short run with a few users
        # visits every page; the tasks below then pick at random by their weights.
        for action in (self.approve_one, self.start_small_batch, self.open_latest_batch):
            time.sleep(self.wait_time())
            action()

    # --- pages ------------------------------------------------------------------------

    def page(self, path, name, must_contain=None, check=None):
        """GET a page; its text, or None when it failed (the failure is recorded).

        ``check(text)`` may name what else is wrong with the page (None when nothing is).
        """
        with self.client.get(path, name=name, catch_response=True) as response:
            if response.status_code != 200:
                response.failure(f"HTTP {response.status_code}")
                return None
            text = response.text
            problem = (f"the page lacks {must_contain!r}" if must_contain and must_contain not in text
                       else check(text) if check else None)
            if problem:
                response.failure(problem)
                return None
            return text

    def post_form(self, path, name, pairs, redirect_to):
        """POST a form (not following the redirect); the redirect's path, or None on failure.

        ``redirect_to`` is a compiled pattern the Location's path must match: anything else (a form
        sent back with errors, a redirect back to the task with a flashed conflict) is a failure.
        """
        with self.client.post(path, name=name, data=urlencode(pairs), headers=FORM_HEADERS,
                              allow_redirects=False, catch_response=True) as response:
            location = _path(response.headers.get("Location"))
            if response.status_code != 302:
                response.failure(f"HTTP {response.status_code} instead of a redirect")
                return None
            if not redirect_to.match(location):
                response.failure(f"redirected to {location}")
                return None
            return location

    def log_in(self):
        page = self.page("/login", "login page", must_contain='name="csrf_token"')
        if page is None:
            return
        landed = self.post_form("/login", "log in", [
            ("csrf_token", _csrf(page)), ("username", self.username), ("password", PASSWORD)],
            re.compile(r"^/$"))
        if landed:
            self.my_tasks()

    def my_tasks(self, **filters):
        """My tasks (all nodes), or filtered to the load node and a title ("Single", "Batch")."""
        if not filters:
            page = self.page("/", "My tasks", must_contain='id="task-table"')
        else:
            page = self.page("/?" + urlencode(filters), "My tasks, one node",
                             must_contain='id="task-table"')
        if page and self.node_id is None:
            found = NODE_LINK.search(page)
            if found:
                self.node_id = found.group(1) or found.group(2)
        return page

    def free_rows(self, title):
        """Ids of the rows without a badge (not in a batch, not locked) on My tasks at the node."""
        if self.node_id is None and self.my_tasks() is None:
            return []
        if self.node_id is None:
            return []
        page = self.my_tasks(node_id=self.node_id, q=title)
        if page is None:
            return []
        return [int(task_id) for task_id, cells in TASK_ROW.findall(page) if "badge" not in cells]

    def watch_batch(self, batch_id):
        """The batch page, polled like batches.js does while the batch is active.

        True once the user saw the batch stopped, False when it still ran after ``WATCH_SECONDS`` (the
        user leaves), None when a request failed.
        """
        page = self.page(f"/batches/{batch_id}", "batch page", must_contain='id="batch-progress"')
        if page is None:
            return None
        if 'data-active="1"' not in page:
            return True
        deadline = time.monotonic() + WATCH_SECONDS
        while time.monotonic() < deadline:
            time.sleep(POLL_SECONDS)
            with self.client.get(f"/batches/{batch_id}/progress", name="progress",
                                 headers=JSON_HEADERS, catch_response=True) as response:
                if response.status_code != 200:
                    response.failure(f"HTTP {response.status_code}")
                    return None
                try:
                    data = response.json()
                except ValueError:
                    response.failure("not JSON")
                    return None
                if data.get("active"):
                    continue
                failed = (data.get("by_status") or {}).get("failed")
                if failed:
                    response.failure(f"the batch ended with {failed} failed items")
            # batches.js reloads the page once the batch has stopped
            self.page(f"/batches/{batch_id}", "batch page", must_contain='id="batch-progress"')
            return True
        return False

    def record(self, name, started, problem=None):
        """A figure that is no request (its time since ``started``), or a failure when ``problem``."""
        self.environment.events.request.fire(
            request_type="BATCH", name=name, response_length=0, context={}, response=None,
            response_time=(time.monotonic() - started) * 1000,
            exception=RuntimeError(problem) if problem else None)

    def free_rows_or_failure(self, title):
        rows = self.free_rows(title)
        if not rows and self.node_id is not None:
            # The seeded tasks ran out: the figures would leave out this action. Say so.
            self.record("no task left", time.monotonic(),
                        f"no pending {title!r} task left for {self.username}: seed more (--tasks-per-user)")
        return rows

    # --- what the user does -------------------------------------------------------------

    @task(3)
    def look_at_my_tasks(self):
        self.my_tasks()

    @task(2)
    def approve_one(self):
        rows = self.free_rows_or_failure("Single")
        if not rows:
            return
        task_id = random.choice(rows)
        page = self.page(f"/tasks/{task_id}", "task page", must_contain='id="decide-form"')
        if page is None:
            return
        form = page[page.index('id="decide-form"'):]
        landed = self.post_form(f"/tasks/{task_id}/decide", "approve", [
            ("csrf_token", _csrf(form)), *FORM.items(), ("comment", "load test"),
            ("action", "approve")], re.compile(r"^/$"))
        if landed:
            self.my_tasks()

    @task(1)
    def start_small_batch(self):
        rows = self.free_rows_or_failure("Batch")[:BATCH_SIZE]
        if not rows:
            return
        chosen = [("node_id", self.node_id)] + [("task_ids", task_id) for task_id in rows]

        def all_eligible(text):
            # The preview counts the chosen tasks it can handle: all of them, they are the user's own.
            found = ELIGIBLE.search(text)
            eligible = int(found.group(1)) if found else 0
            return None if eligible == len(rows) else f"{eligible} of {len(rows)} tasks eligible"

        page = self.page("/batches/new?" + urlencode(chosen), "batch form",
                         must_contain='id="batch-form"', check=all_eligible)
        if page is None:
            return
        started = time.monotonic()
        location = self.post_form("/batches/new", "start batch", [
            ("csrf_token", _csrf(page)), *chosen, ("action", "approve"), *FORM.items(),
            *(("set_all", key) for key in FORM),   # the form's fields, set for every task
            ("comment", "load test"), ("concurrency", "")], BATCH_ID)
        if location:
            seen = self.watch_batch(BATCH_ID.match(location).group(1))
            if seen is not None:
                self.record("small batch done", started,
                            None if seen else f"still running after {WATCH_SECONDS:.0f} s")

    @task(2)
    def open_latest_batch(self):
        page = self.page("/batches", "batches list")
        found = BATCH_LINK.search(page or "")
        if found:
            self.watch_batch(found.group(1))
