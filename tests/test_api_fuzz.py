"""Schemathesis against a live portal: every /api/v1 operation keeps its document.

The app serves on a free loopback port (werkzeug, in a thread) on the suite's
database and Redis, seeded with a supervisor's token, pending tasks and
batches (one with failed items). Schemathesis' command line reads
/api/v1/openapi.json from it and sends valid and invalid requests to each
operation: its coverage phase (boundaries, wrong types, missing and unknown
fields), then random ones. The run fails on any 5xx, a status or content type
the document does not list, an answer whose body does not match its schema,
invalid input that is not refused with a 4xx, or an operation that answers
without the token. Schemathesis runs as its own process so that it uses the
second core and its report is the one its users know.

Marked ``fuzz``: ``-m fuzz`` runs it alone, and it runs in ``make test``.
``FUZZ_EXAMPLES`` and ``FUZZ_SEED`` widen or vary a local run.
"""
import json
import os
import subprocess
import sys
import threading
import time

import pytest
from werkzeug.serving import make_server

from support import GOOD_FORM
from portal.batches import runner
from portal.infra.extensions import db
from portal.models import BatchItem
from portal.workflow import engine

pytestmark = pytest.mark.fuzz

# Cases per operation in the random phase: 2,340 requests, about 40 s per database
# on two cores (the coverage phase adds its own boundary cases).
MAX_EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "100"))
SEED = int(os.environ.get("FUZZ_SEED", "20261130"))
CHECKS = ("not_a_server_error", "status_code_conformance", "content_type_conformance",
          "response_schema_conformance", "negative_data_rejection", "ignored_auth")
SCHEMATHESIS = [sys.executable, "-m", "schemathesis.cli"]  # its command line, from this venv


def _config(rows):
    """schemathesis.toml: no example database or cache left behind, and the
    seeded rows' ids mixed into generated ids and keys (``dictionaries``), so
    most requests reach past "not found" while the rest stay random."""
    lines = ["[cache]", "enabled = false", "", "[generation]", 'database = "none"', ""]
    for name, values in rows.items():
        lines += [f"[dictionaries.{name}]", f"values = {json.dumps(values)}", ""]
    lines.append("[parameters]")
    for key, name in BINDINGS.items():
        lines.append(f'"{key}" = {{ dictionary = "{name}", probability = 0.7 }}')
    return "\n".join(lines) + "\n"


BINDINGS = {
    "path.task_id": "tasks", "body.task_ids[*]": "tasks", "path.batch_id": "batches",
    "path.node_id": "nodes", "query.node_id": "nodes", "body.node_id": "nodes",
    "body.item_ids[*]": "items", "body.process": "processes", "query.process": "processes",
    "path.instance_id": "instances",
}


def _seed(factory):
    """A supervisor who also holds the finance role, and data for every operation:
    pending and done tasks, a pending batch of someone else's, a batch with
    failed items, one to pause, resume and cancel. Returns the token and the ids."""
    alice = factory.user("alice")
    sam = factory.user("sam", role="supervisor", workflow_roles="finance")
    factory.process()
    manager_tasks = factory.tasks(12, starter=alice)
    for task in manager_tasks[:6]:
        engine.decide(task.id, alice, "approve", None, GOOD_FORM)
    db.session.commit()
    finance = [task.instance.tasks[-1] for task in manager_tasks[:6]]  # pending for sam
    batches = [factory.batch(alice, manager_tasks[6:8]),
               factory.batch(sam, finance[:2], form={}),  # fails: sam is disabled meanwhile
               factory.batch(sam, finance[2:4], form={})]
    # one-task batches, so that some are still pending when pause and resume come
    batches += [factory.batch(alice, [task]) for task in manager_tasks[8:]]
    sam.disabled = True
    db.session.commit()
    runner.run_inline(batches[1].id)
    sam.disabled = False
    db.session.commit()
    rows = {"tasks": sorted(t.id for t in manager_tasks + finance),
            "batches": [b.id for b in batches],
            "nodes": sorted({t.node_id for t in manager_tasks + finance}),
            "items": db.session.execute(db.select(BatchItem.id).where(
                BatchItem.batch_id == batches[1].id)).scalars().all(),
            "processes": ["expense"],
            "instances": sorted(t.instance_id for t in manager_tasks)}
    return factory.token(sam), rows


@pytest.fixture
def live_portal(app, factory):
    token, rows = _seed(factory)
    db.session.remove()  # no transaction open while the server works (SQLite's write lock)
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}", token, rows
    server.shutdown()
    thread.join(timeout=5)


def test_every_operation_keeps_its_document(live_portal, tmp_path):
    base, token, rows = live_portal
    config = tmp_path / "schemathesis.toml"
    config.write_text(_config(rows))
    args = [*SCHEMATHESIS, "--config-file", str(config), "--no-color", "run",
            f"{base}/api/v1/openapi.json", "--checks", ",".join(CHECKS),
            "--phases", "coverage,fuzzing", "--mode", "all",
            "--max-examples", str(MAX_EXAMPLES), "--seed", str(SEED), "--workers", "1",
            "--header", f"Authorization: Bearer {token}", "--request-timeout", "30"]
    started = time.monotonic()
    result = subprocess.run(args, cwd=tmp_path, capture_output=True, text=True, timeout=600)
    elapsed = time.monotonic() - started
    output = result.stdout + result.stderr
    print(f"\nfuzz on {db.engine.dialect.name}: {elapsed:.1f} s, max_examples={MAX_EXAMPLES}, "
          f"seed={SEED}\n" + output[-3000:])
    assert result.returncode == 0, output
