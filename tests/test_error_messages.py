"""An item's error is stored as a message (msgid + params), not as text: each reader reads
it in their own language, with the node's labels, on every page, in the API (English, with
``error_code``) and in the error workbook; errors stored as text before still show."""
import io
import re
from datetime import timedelta
from html import unescape

import openpyxl
import pytest
from sqlalchemy import inspect as inspect_schema

from support import GOOD_FORM, csrf_token, login
from excel_support import node_by_key, single_file, upload
from portal.batches import control, creation, recovery, runner
from portal.excel.templates import build_template
from portal.infra.extensions import db
from portal.models import BatchItem, BatchItemAttempt
from portal.models.base import utcnow
from portal.workflow import engine

# A decision the runner refuses field by field: a number under its minimum, and a
# table row without its required column and with a cost that is no number.
BAD_FORM = {"amount": -1, "category": "Travel", "lines": [{"cost": "x"}]}
ENGLISH_SUMMARY = ("Amount: Must be at least 0; Lines: Row 1: Item: This field is required. "
                   "Row 1: Cost: Enter a number")
CHINESE_AMOUNT = "Amount：不能小于 0"
CHINESE_LINES = "第 1 行：Item：此项必填。 第 1 行：Cost：请输入数字"


def _html(response):
    return unescape(response.get_data(as_text=True))


def _item_error(html):
    return re.search(r"data-item-error>([^<]*)<", html).group(1).strip()


def _field_errors(html):
    """The item page's list of field errors."""
    block = re.search(r"</dt>\s*<dd[^>]*><ul[^>]*>(.*?)</ul>", html, re.S)
    return re.findall(r"<li>([^<]*)</li>", block.group(1)) if block else []


def _attempt_errors(html):
    """The Error cell (the last) of each row of the item page's attempts."""
    table = re.search(r'id="attempts-table">.*?<tbody>(.*?)</tbody>', html, re.S).group(1)
    return [re.findall(r"<td[^>]*>([^<]*)</td>", row)[-1].strip()
            for row in re.findall(r"<tr[^>]*>(.*?)</tr>", table, re.S)]


def _reader(app, name):
    """A browser of its own, logged in as ``name``."""
    client = app.test_client()
    login(client, name)
    return client


def _speaking(users, **locales):
    for name, locale in locales.items():
        users[name].locale = locale
    db.session.commit()


def _items(batch_id):
    db.session.expire_all()
    return {i.task_id: i for i in db.session.execute(
        db.select(BatchItem).where(BatchItem.batch_id == batch_id)).scalars()}


@pytest.fixture
def chinese_batch(factory, users):
    """A batch alice made while speaking Chinese, run: task 0 failed its values, task 1 was
    ignored (its instance suspended), task 2 succeeded. sam reads English, admin Chinese."""
    _speaking(users, alice="zh_CN", admin="zh_CN", sam="en")
    tasks = factory.tasks(3, starter=users["admin"])
    rows = {tasks[0].id: {"decision": {"action": "approve", "form": BAD_FORM}},
            tasks[1].id: {"decision": {"action": "approve", "form": GOOD_FORM}},
            tasks[2].id: {"decision": {"action": "approve", "form": GOOD_FORM}}}
    batch = creation.create_batch(users["alice"], tasks[0].node, task_ids=list(rows),
                                  mode="single", rows=rows)
    db.session.commit()
    engine.set_suspended(tasks[1].instance_id, users["admin"], True)
    db.session.commit()
    runner.run_inline(batch.id)
    items = _items(batch.id)
    assert [items[t.id].status for t in tasks] == ["failed", "ignored", "success"]
    return batch, tasks, items


# --- the reported bug: field keys instead of labels ----------------------------------------

def test_the_item_page_names_faulty_fields_by_their_labels(client, factory, users):
    tasks = factory.tasks(1, starter=users["admin"])
    batch = creation.create_batch(users["alice"], tasks[0].node, task_ids=[tasks[0].id],
                                  mode="single", rows={tasks[0].id: {"decision": {
                                      "action": "approve", "form": BAD_FORM}}})
    db.session.commit()
    runner.run_inline(batch.id)
    item = _items(batch.id)[tasks[0].id]
    login(client, "alice")
    html = _html(client.get(f"/batches/{batch.id}/items/{item.id}"))
    assert _item_error(html) == ENGLISH_SUMMARY
    assert _field_errors(html) == [
        "Amount: Must be at least 0.",
        "Lines: Row 1: Item: This field is required. Row 1: Cost: Enter a number."]


def test_after_a_retry_the_errors_still_name_the_labels(client, factory, users):
    """The creator was disabled (a user error), then enabled and the item retried: it now
    fails for its values, and every text on its page names the fields by their labels."""
    _speaking(users, alice="zh_CN", sam="en")
    tasks = factory.tasks(1, starter=users["admin"])
    batch = creation.create_batch(users["alice"], tasks[0].node, task_ids=[tasks[0].id],
                                  mode="single", rows={tasks[0].id: {"decision": {
                                      "action": "approve", "form": BAD_FORM}}})
    users["alice"].disabled = True
    db.session.commit()
    runner.run_inline(batch.id)
    item = _items(batch.id)[tasks[0].id]
    assert (item.status, item.error_kind, item.error_code) == ("failed", "user", "user_disabled")
    assert item.error == "User alice is disabled."
    users["alice"].disabled = False
    db.session.commit()
    _batch, retried, _at_limit, _fix = control.retry(batch, users["sam"])
    db.session.commit()
    assert retried == 1
    runner.run_inline(batch.id)
    item = _items(batch.id)[tasks[0].id]
    assert (item.status, item.error_code, item.retry_count) == ("failed", "validation", 1)

    login(client, "sam")
    html = _html(client.get(f"/batches/{batch.id}/items/{item.id}"))
    assert _item_error(html) == ENGLISH_SUMMARY
    assert _field_errors(html)[0] == "Amount: Must be at least 0."
    assert _attempt_errors(html) == ["User alice is disabled.", ENGLISH_SUMMARY]
    assert ENGLISH_SUMMARY in _html(client.get(f"/batches/{batch.id}"))


def test_after_a_correction_the_errors_still_name_the_labels(app, client, users, chinese_batch):
    batch, tasks, items = chinese_batch
    item = items[tasks[0].id]
    login(client, "alice")                        # the creator corrects, in Chinese
    url = f"/batches/{batch.id}/items/{item.id}/correct"
    form = _html(client.get(url))
    assert "不能小于 0" in form and "Must be at least" not in form
    done = client.post(url, data={"csrf_token": csrf_token(client, url), "action": "approve",
                                  "amount": "5", "category": "Travel"})
    assert done.status_code == 302
    corrected = db.session.execute(db.select(BatchItemAttempt).where(
        BatchItemAttempt.item_id == item.id, BatchItemAttempt.outcome == "corrected")).scalar_one()
    assert corrected.error == ENGLISH_SUMMARY and corrected.error_detail is not None

    sam = _reader(app, "sam")
    html = _html(sam.get(f"/batches/{batch.id}/items/{item.id}"))
    assert _item_error(html) == ENGLISH_SUMMARY           # the last try's, until it runs
    assert _attempt_errors(html) == [ENGLISH_SUMMARY, ENGLISH_SUMMARY]
    page = _html(sam.get(f"/batches/{batch.id}"))
    assert f"Last try: {ENGLISH_SUMMARY}" in page


# --- each reader's language ------------------------------------------------------------------

def test_a_chinese_creators_failure_reads_in_english_for_an_english_supervisor(
        client, chinese_batch):
    batch, tasks, items = chinese_batch
    failed, ignored = items[tasks[0].id], items[tasks[1].id]
    login(client, "sam")
    page = _html(client.get(f"/batches/{batch.id}"))
    assert ENGLISH_SUMMARY in page and "The instance is suspended." in page
    assert "不能小于" not in page and "该实例已挂起" not in page
    html = _html(client.get(f"/batches/{batch.id}/items/{failed.id}"))
    assert _item_error(html) == ENGLISH_SUMMARY
    assert _attempt_errors(html) == [ENGLISH_SUMMARY]
    html = _html(client.get(f"/batches/{batch.id}/items/{ignored.id}"))
    assert _item_error(html) == "The instance is suspended."


def test_a_chinese_creators_failure_reads_in_chinese_for_a_chinese_supervisor(
        client, chinese_batch):
    batch, tasks, items = chinese_batch
    failed, ignored = items[tasks[0].id], items[tasks[1].id]
    login(client, "admin")
    page = _html(client.get(f"/batches/{batch.id}"))
    assert CHINESE_AMOUNT in page and "该实例已挂起。" in page
    assert "Must be at least" not in page and "suspended." not in page
    html = _html(client.get(f"/batches/{batch.id}/items/{failed.id}"))
    assert _item_error(html) == f"{CHINESE_AMOUNT}；Lines：{CHINESE_LINES}"
    assert _field_errors(html) == ["Amount：不能小于 0。", f"Lines：{CHINESE_LINES}。"]
    assert _item_error(_html(client.get(f"/batches/{batch.id}/items/{ignored.id}"))) == \
        "该实例已挂起。"


def test_an_english_creators_failure_reads_in_chinese_for_a_chinese_reader(
        client, factory, users):
    _speaking(users, alice="en", admin="zh_CN")
    tasks = factory.tasks(1, starter=users["admin"])
    batch = factory.batch(users["alice"], tasks)
    users["alice"].disabled = True
    db.session.commit()
    runner.run_inline(batch.id)
    item = _items(batch.id)[tasks[0].id]
    assert item.error == "User alice is disabled."
    login(client, "admin")
    html = _html(client.get(f"/batches/{batch.id}/items/{item.id}"))
    assert _item_error(html) == "用户 alice 已停用。"


def test_items_at_the_retry_limit_read_in_the_supervisors_language(app, factory, users):
    _speaking(users, alice="zh_CN", admin="zh_CN", sam="en")
    tasks = factory.tasks(1, starter=users["admin"])
    batch = factory.batch(users["alice"], tasks)
    users["alice"].disabled = True
    db.session.commit()
    runner.run_inline(batch.id)
    db.session.execute(db.update(BatchItem).where(BatchItem.batch_id == batch.id)
                       .values(retry_count=app.config["BATCH_RETRY_LIMIT"]))
    db.session.commit()
    english = _html(_reader(app, "sam").get("/attention"))
    chinese = _html(_reader(app, "admin").get("/attention"))
    assert "User alice is disabled." in english and "用户 alice 已停用。" not in english
    assert "用户 alice 已停用。" in chinese and "User alice is disabled." not in chinese


def test_the_api_answers_in_english_with_an_error_code(api, chinese_batch):
    batch, tasks, items = chinese_batch
    for reader in ("sam", "admin"):                       # whatever language the reader speaks
        body = api(reader).get(f"/batches/{batch.id}/items").get_json()
        by_task = {i["task_id"]: i for i in body["items"]}
        failed, ignored, done = (by_task[t.id] for t in tasks)
        assert (failed["error"], failed["error_code"], failed["error_kind"]) == (
            ENGLISH_SUMMARY, "validation", "validation")
        assert failed["field_errors"] == {
            "amount": "Must be at least 0.",
            "lines": "Row 1: Item: This field is required. Row 1: Cost: Enter a number."}
        assert (ignored["error"], ignored["error_code"]) == ("The instance is suspended.",
                                                            "suspended")
        assert (done["error"], done["error_code"]) == (None, None)


def _workbook_errors(content):
    """{task id: the Error column's text} of a single-mode error workbook."""
    sheet = openpyxl.load_workbook(io.BytesIO(content)).worksheets[0]
    rows = list(sheet.iter_rows(values_only=True))
    column = list(rows[0]).index("Error")
    return {row[0]: row[column] for row in rows[1:] if row[0] is not None}


def test_the_error_workbook_speaks_its_readers_language(app, api, chinese_batch):
    batch, tasks, _items_ = chinese_batch
    english = _workbook_errors(_reader(app, "sam").get(f"/batches/{batch.id}/error-file").data)
    assert english == {tasks[0].id: ENGLISH_SUMMARY}
    chinese = _workbook_errors(_reader(app, "admin").get(f"/batches/{batch.id}/error-file").data)
    assert chinese == {tasks[0].id: f"{CHINESE_AMOUNT}；Lines：{CHINESE_LINES}"}
    # The API builds it in the token user's language too.
    assert _workbook_errors(api("sam").get(f"/batches/{batch.id}/error-file").data) == english
    assert _workbook_errors(api("admin").get(f"/batches/{batch.id}/error-file").data) == chinese


# --- what is stored ---------------------------------------------------------------------------

def test_table_line_errors_are_stored_nested(chinese_batch):
    _batch, tasks, items = chinese_batch
    item = items[tasks[0].id]
    lines = item.field_errors["lines"]["all"]
    assert [line["msgid"] for line in lines] == ["Row %(n)s: %(label)s: %(message)s"] * 2
    assert lines[0]["params"]["message"] == {"msgid": "This field is required.", "params": {}}
    assert lines[1]["params"]["message"] == {"msgid": "Enter a number.", "params": {}}
    assert item.field_errors["amount"] == {"msgid": "Must be at least %(min)s.",
                                           "params": {"min": 0}}
    assert item.error_detail == {"fields": item.field_errors}


def _msgids(data):
    """Every msgid in stored message data."""
    if isinstance(data, dict):
        found = {data["msgid"]} if "msgid" in data else set()
        for value in data.values():
            found |= _msgids(value)
        return found
    if isinstance(data, list):
        return set().union(*map(_msgids, data)) if data else set()
    return set()


def test_every_message_an_item_stores_is_in_the_catalog(chinese_batch):
    """Stored msgids are the literal strings of the code, so extraction finds them all."""
    from babel.messages.pofile import read_po
    from portal.batches import item_errors
    from portal.messages import N_
    _batch, tasks, items = chinese_batch
    stored = set()
    for item in items.values():
        stored |= _msgids(item.error_detail) | _msgids(item.field_errors)
    stored |= set(item_errors.USER_ERROR_CODES)
    stored |= {recovery.LEASE_EXPIRED_MSGID, N_("%(label)s: %(message)s")}
    assert len(stored) > 10
    with open("portal/translations/zh_Hans_CN/LC_MESSAGES/messages.po", "rb") as fh:
        catalog = {m.id for m in read_po(fh) if m.string}
    assert stored - catalog == set()


def test_errors_stored_as_text_before_still_show(client, api, chinese_batch):
    """Items written before messages became data hold only text: shown as it is."""
    batch, tasks, items = chinese_batch
    item = items[tasks[0].id]
    db.session.execute(db.update(BatchItem).where(BatchItem.id == item.id).values(
        error="金额：不能小于 0", error_detail=None, error_code=None,
        field_errors={"amount": "不能小于 0。"}))
    db.session.execute(db.update(BatchItemAttempt).where(BatchItemAttempt.item_id == item.id)
                       .values(error="旧的错误", error_detail=None))
    db.session.commit()
    login(client, "sam")
    html = _html(client.get(f"/batches/{batch.id}/items/{item.id}"))
    assert _item_error(html) == "金额：不能小于 0"
    assert _field_errors(html) == ["Amount: 不能小于 0。"]
    assert _attempt_errors(html) == ["旧的错误"]
    assert "金额：不能小于 0" in _html(client.get(f"/batches/{batch.id}"))
    found = {i["task_id"]: i for i in api("sam").get(f"/batches/{batch.id}/items").get_json()["items"]}
    assert (found[tasks[0].id]["error"], found[tasks[0].id]["error_code"]) == (
        "金额：不能小于 0", "validation")              # the code falls back to the kind
    assert found[tasks[0].id]["field_errors"] == {"amount": "不能小于 0。"}
    assert _workbook_errors(client.get(f"/batches/{batch.id}/error-file").data) == {
        tasks[0].id: "金额：不能小于 0"}


def test_rows_that_failed_to_import_read_in_each_readers_language(app, client, factory, users):
    """alice imports in Chinese; a row with an unknown action and a word for a number is
    stored as messages, so sam reads it in English."""
    _speaking(users, alice="zh_CN", sam="en")
    tasks = factory.tasks(1, starter=users["admin"])
    node = node_by_key()
    data = single_file(build_template(users["alice"], node, "single", "zh_CN"), [
        (tasks[0].id, {"C": "maybe", "E": "ten", "F": "Travel"})])
    headers = {"Authorization": f"Bearer {factory.token(users['alice'])}",
               "Accept-Language": "zh-CN"}
    response = upload(client, headers, node, data)
    assert response.status_code == 202, response.get_data(as_text=True)
    batch_id = response.get_json()["batch"]["id"]
    item = _items(batch_id)[tasks[0].id]
    assert (item.status, item.error_code) == ("import_failed", "validation")
    assert item.error == "Action: Choose approve or reject; Amount: Enter a number"
    page = f"/batches/{batch_id}/items/{item.id}"
    assert _item_error(_html(_reader(app, "sam").get(page))) == item.error
    assert _item_error(_html(_reader(app, "alice").get(page))) == \
        "操作：请选择同意或驳回；Amount：请输入数字"


def test_a_lost_worker_reads_in_each_readers_language(factory, users, app):
    _speaking(users, alice="zh_CN", admin="zh_CN", sam="en")
    tasks = factory.tasks(1, starter=users["admin"])
    batch = factory.batch(users["alice"], tasks)
    claim = runner.claim_next(batch.id)
    later = utcnow() + timedelta(seconds=app.config["BATCH_LEASE_SECONDS"] + 1)
    assert len(recovery.reclaim_leases(later)) == 1
    item = db.session.get(BatchItem, claim.item_id)
    assert (item.error_code, item.error_kind) == ("lease_expired", "unexpected")
    page = f"/batches/{batch.id}/items/{item.id}"
    assert _item_error(_html(_reader(app, "sam").get(page))) == str(recovery.LEASE_EXPIRED)
    html = _html(_reader(app, "admin").get(page))
    assert _attempt_errors(html) == ["执行此明细的工作进程在完成前停止了（其租约已过期）。"]


# --- messages themselves ----------------------------------------------------------------------

def test_a_field_named_in_a_message_takes_the_readers_label(users):
    from flask_babel import force_locale
    from portal.batches.item_errors import key_labels
    from portal.messages import data_of, field, message, render
    misplaced = ("Row %(row)s should be labelled \"%(expected)s\". Do not add, move or delete "
                 "rows above the tables.")
    with force_locale("en"):
        made = message(misplaced, row=3, expected=field("action", "Action"))
    assert made == 'Row 3 should be labelled "Action". Do not add, move or delete rows above the tables.'
    assert data_of(made) == {"msgid": misplaced, "params": {"row": 3, "expected": {"field": "action"}}}
    node = node_by_key()
    with force_locale("zh_CN"):
        chinese = render(data_of(made), key_labels(node))
    assert chinese == "第 3 行的标签应为“操作”。请勿在表格上方添加、移动或删除行。"


def test_data_a_release_cannot_read_renders_without_failing(app):
    from flask_babel import force_locale
    from portal.messages import render
    with force_locale("zh_CN"):
        # params that do not fit the message: the source as it is
        assert render({"msgid": "Must be at least %(min)s.", "params": {"least": 0}}) == \
            "Must be at least %(min)s."
        assert render({"msgid": "Not a message of the catalog", "params": {"x": 1}}) == \
            "Not a message of the catalog"
        assert render({"shape": "from a newer release"}) == ""
        assert render("plain text") == "plain text"
        assert render(None) == ""


# --- the migration --------------------------------------------------------------------------

# The scratch database fixture of the migration tests, and their helpers.
from test_migrations import MIGRATIONS, _insert, _json, _rows, scratch_app  # noqa: E402,F401,F811

BEFORE_MESSAGES = "f3a7c2d9e1b4"


def test_items_stored_before_keep_their_text_and_get_their_kind_as_code(scratch_app):
    from flask_migrate import downgrade, upgrade
    from portal.batches import item_errors
    with scratch_app.app_context():
        upgrade(directory=MIGRATIONS, revision=BEFORE_MESSAGES)
        with db.engine.begin() as conn:
            _insert(conn, "user", id=1, username="ann")
            _insert(conn, "process_definition", id=7, key="expense", definition={})
            _insert(conn, "node", id=3, process_id=7, key="manager", fields=[])
            _insert(conn, "batch", id=5, number="B1", process_id=7, node_id=3, created_by_id=1)
            _insert(conn, "batch_item", id=9, batch_id=5, task_id=42, status="failed",
                    error_kind="validation", error="金额：不能小于 0",
                    field_errors={"amount": "不能小于 0。"})
            _insert(conn, "batch_item", id=10, batch_id=5, task_id=43, status="success")
            _insert(conn, "batch_item_attempt", id=1, item_id=9, batch_id=5,
                    started_at=utcnow(), outcome="failed", error="金额：不能小于 0")
        upgrade(directory=MIGRATIONS)
        with db.engine.connect() as conn:
            rows = _rows(conn, "SELECT id, error_code, error_detail FROM batch_item ORDER BY id")
        assert rows == [(9, "validation", None), (10, None, None)]
        item = db.session.get(BatchItem, 9)
        attempt = db.session.get(BatchItemAttempt, 1)
        assert item_errors.text(item, {}) == item_errors.text(attempt, {}) == "金额：不能小于 0"
        assert item_errors.field_texts(item.field_errors, {}) == {"amount": "不能小于 0。"}
        db.session.remove()
        downgrade(directory=MIGRATIONS, revision=BEFORE_MESSAGES)
        with db.engine.connect() as conn:
            rows = _rows(conn, "SELECT id, error, field_errors FROM batch_item WHERE id = 9")
        assert [(r[0], r[1], _json(r[2])) for r in rows] == [
            (9, "金额：不能小于 0", {"amount": "不能小于 0。"})]
        schema = inspect_schema(db.engine)
        assert not {"error_code", "error_detail"} & {c["name"] for c in schema.get_columns("batch_item")}
        assert "error_detail" not in {c["name"] for c in schema.get_columns("batch_item_attempt")}
