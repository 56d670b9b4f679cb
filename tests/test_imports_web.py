"""The import pages: templates, upload -> preview -> confirm, error workbooks."""
import io
import re

import openpyxl
import pytest

from support import csrf_token, login
from portal.excel.meta import META_SHEET
from portal.excel.templates import build_template
from portal.infra.extensions import db
from portal.jobs.excel_jobs import build_error_file
from portal.models import Batch, Task
from portal.models.uploads import PendingUpload
from excel_support import node_by_key as _node, save, single_file


def count(model):
    return db.session.execute(db.select(db.func.count(model.id))).scalar()


@pytest.fixture
def env(factory, client):
    users = factory.standard(tasks=3)
    tasks = db.session.execute(db.select(Task).order_by(Task.id)).scalars().all()
    node = _node()
    template = build_template(users["alice"], node, "single", "en")
    data = single_file(template, [(tasks[0].id, {"C": "approve", "E": 3, "F": "Travel"}),
                             (tasks[1].id, {"C": "approve", "E": "three", "F": "Travel"})])
    login(client, "alice")
    return users, tasks, node, data


def post_upload(client, url, data, mode="single", token_page=None):
    token = csrf_token(client, token_page or url)
    return client.post(url, data={"csrf_token": token, "mode": mode,
                                  "file": (io.BytesIO(data), "claims.xlsx")},
                       content_type="multipart/form-data")


def test_node_page_offers_both_templates(client, env):
    users, tasks, node, data = env
    page = client.get(f"/nodes/{node.id}/import").get_data(as_text=True)
    assert f"/nodes/{node.id}/template?mode=single" in page
    assert f"/nodes/{node.id}/template?mode=per_instance" in page
    assert 'enctype="multipart/form-data"' in page and 'name="csrf_token"' in page
    for mode in ("single", "per_instance"):
        response = client.get(f"/nodes/{node.id}/template?mode={mode}")
        assert response.status_code == 200
        book = openpyxl.load_workbook(io.BytesIO(response.data))
        assert {r[0]: r[1] for r in book[META_SHEET].iter_rows(values_only=True)}["mode"] == mode
    index = client.get("/imports").get_data(as_text=True)
    assert f"/nodes/{node.id}/import" in index
    assert client.get("/nodes/9999/import").status_code == 404
    bad_mode = client.get(f"/nodes/{node.id}/template?mode=pdf")
    assert bad_mode.status_code == 400
    assert "mode must be single or per_instance." in bad_mode.get_data(as_text=True)


def test_template_follows_the_page_language(client, env):
    users, tasks, node, data = env
    client.post("/lang/zh_CN", data={"csrf_token": csrf_token(client, "/")})
    book = openpyxl.load_workbook(io.BytesIO(client.get(
        f"/nodes/{node.id}/template?mode=single").data))
    assert {r[0]: r[1] for r in book[META_SHEET].iter_rows(values_only=True)}["locale"] == "zh_CN"


def test_pages_need_a_login(app):
    anonymous = app.test_client()
    response = anonymous.get("/imports")
    assert response.status_code == 302 and "/login" in response.headers["Location"]


def test_upload_preview_confirm(client, env):
    users, tasks, node, data = env
    response = post_upload(client, f"/nodes/{node.id}/import", data)
    assert response.status_code == 302
    preview_url = response.headers["Location"]
    assert re.search(r"/imports/\d+$", preview_url)
    assert count(Batch) == 0 and count(PendingUpload) == 1
    page = client.get(preview_url).get_data(as_text=True)
    assert 'id="preview-valid"><span class="fs-4">1<' in page
    assert "E (Amount)" in page and "Enter a number." in page
    token = csrf_token(client, preview_url)
    response = client.post(preview_url + "/confirm", data={"csrf_token": token})
    assert response.status_code == 302
    batch = db.session.execute(db.select(Batch)).scalar_one()
    assert response.headers["Location"].endswith(f"/batches/{batch.id}")
    assert (batch.mode, batch.total, batch.pending, batch.failed) == ("single", 2, 1, 1)
    assert count(PendingUpload) == 0
    assert client.post(preview_url + "/confirm", data={"csrf_token": token}).status_code == 404


def test_someone_elses_upload_is_not_found(app, client, env):
    users, tasks, node, data = env
    preview_url = post_upload(client, f"/nodes/{node.id}/import", data).headers["Location"]
    other = app.test_client()
    login(other, "carol")
    assert other.get(preview_url).status_code == 404
    token = csrf_token(other, f"/nodes/{node.id}/import")
    assert other.post(preview_url + "/confirm", data={"csrf_token": token}).status_code == 404
    assert other.post(preview_url + "/discard", data={"csrf_token": token}).status_code == 404
    assert count(Batch) == 0 and count(PendingUpload) == 1


def test_only_a_few_unconfirmed_uploads_are_kept(client, env):
    users, tasks, node, data = env
    urls = [post_upload(client, f"/nodes/{node.id}/import", data).headers["Location"]
            for _ in range(7)]
    assert count(PendingUpload) == 5
    assert client.get(urls[0]).status_code == 404 and client.get(urls[-1]).status_code == 200


def test_discard(client, env):
    users, tasks, node, data = env
    preview_url = post_upload(client, f"/nodes/{node.id}/import", data).headers["Location"]
    token = csrf_token(client, preview_url)
    response = client.post(preview_url + "/discard", data={"csrf_token": token})
    assert response.status_code == 302 and count(PendingUpload) == 0
    assert "nothing was imported" in client.get(response.headers["Location"]).get_data(
        as_text=True)


@pytest.mark.parametrize("payload, status, words", [
    (b"a,b\n1,2\n", 400, "CSV"),
    (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\0" * 600, 400, ".xls"),
])
def test_unusable_upload_shows_why_and_keeps_nothing(client, env, payload, status, words):
    users, tasks, node, data = env
    response = post_upload(client, f"/nodes/{node.id}/import", payload)
    assert response.status_code == status
    assert words in response.get_data(as_text=True)
    assert count(PendingUpload) == 0 and count(Batch) == 0


def test_wrong_mode_upload_is_refused(client, env):
    users, tasks, node, data = env
    response = post_upload(client, f"/nodes/{node.id}/import", data, mode="per_instance")
    assert response.status_code == 400 and "one row per task" in response.get_data(as_text=True)


def test_too_large_upload_is_413(client, env, app, monkeypatch):
    users, tasks, node, data = env
    token = csrf_token(client, f"/nodes/{node.id}/import")
    monkeypatch.setitem(app.config, "MAX_CONTENT_LENGTH", 1500)
    response = client.post(f"/nodes/{node.id}/import", data={
        "csrf_token": token, "mode": "single", "file": (io.BytesIO(data), "claims.xlsx")},
        content_type="multipart/form-data")
    assert response.status_code == 413
    assert "larger than" in response.get_data(as_text=True)
    assert count(PendingUpload) == 0


def test_upload_without_csrf_token_is_refused(client, env):
    users, tasks, node, data = env
    response = client.post(f"/nodes/{node.id}/import", data={
        "mode": "single", "file": (io.BytesIO(data), "claims.xlsx")},
        content_type="multipart/form-data")
    assert response.status_code == 400 and count(PendingUpload) == 0


def _confirmed_batch(client, node, data):
    preview_url = post_upload(client, f"/nodes/{node.id}/import", data).headers["Location"]
    client.post(preview_url + "/confirm", data={"csrf_token": csrf_token(client, preview_url)})
    return db.session.execute(db.select(Batch).order_by(Batch.id.desc()).limit(1)).scalar_one()


def test_error_file_download_and_corrections(app, client, env):
    users, tasks, node, data = env
    batch = _confirmed_batch(client, node, data)
    assert client.get(f"/batches/{batch.id}/error-file").status_code == 200  # built on demand
    build_error_file(batch.id)
    response = client.get(f"/batches/{batch.id}/error-file")
    assert response.status_code == 200
    assert f"filename={batch.number}-errors.xlsx" in response.headers["Content-Disposition"]
    for name, status in (("sam", 200), ("carol", 404)):
        other = app.test_client()
        login(other, name)
        assert other.get(f"/batches/{batch.id}/error-file").status_code == status
        assert other.get(f"/batches/{batch.id}/corrections").status_code == status

    corrections = f"/batches/{batch.id}/corrections"
    assert "error-file-link" in client.get(corrections).get_data(as_text=True)
    refused = post_upload(client, corrections, data)           # a template, not this error file
    assert refused.status_code == 400 and batch.number in refused.get_data(as_text=True)
    book = openpyxl.load_workbook(io.BytesIO(response.data))
    book.worksheets[0]["E2"] = 30
    accepted = post_upload(client, corrections, save(book))
    assert accepted.status_code == 302
    page = client.get(accepted.headers["Location"]).get_data(as_text=True)
    assert batch.number in page
    client.post(accepted.headers["Location"] + "/confirm",
                data={"csrf_token": csrf_token(client, accepted.headers["Location"])})
    retry = db.session.execute(db.select(Batch).order_by(Batch.id.desc()).limit(1)).scalar_one()
    assert retry.id != batch.id and retry.source_batch_id == batch.id
    assert (retry.total, retry.pending) == (1, 1)
