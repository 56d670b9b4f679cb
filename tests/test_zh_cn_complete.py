"""Every page in 简体中文 speaks Chinese: the catalog translates every message, and no page rendered for a zh_CN
user shows English interface text.

English on a zh_CN page is found two ways: a text node (or a title, placeholder, aria-label or button value)
that is a message of the catalog, which means it was rendered without its translation; and any text with an
English word in it that is neither data of the test (user names, process and node names, titles, numbers) nor
on the short list of words kept as they are (Excel, BPMN, API...), which means it never went through gettext.
"""
import re
from html.parser import HTMLParser

import pytest
from babel.messages.pofile import read_po

from support import GOOD_FORM, csrf_token, login
from portal.batches import runner
from portal.infra.extensions import db
from portal.models import Batch, BatchItem, Instance, ProcessDefinition, Task, User
from portal.workflow import engine

CATALOG = "portal/translations/zh_Hans_CN/LC_MESSAGES/messages.po"
# Names and words that stay as they are in a Chinese interface.
KEPT = {"Excel", "BPMN", "JSON", "API", "OpenAPI", "Token", "RQ", "Redis", "PostgreSQL", "SQLite", "ID", "CSRF",
        "English", "UTF-8", "XLSX", "xlsx", "bpmn", "json", "zh_CN", "en", "v1", "Swagger", "Prometheus",
        "bpmn.io", "HTTP", "URL", "SMTP", "HMAC", "SHA-256", "Webhook", "webhook"}
ATTRIBUTES = ("title", "placeholder", "aria-label", "alt")
ENGLISH_WORD = re.compile(r"[A-Za-z]{3,}")


class _Texts(HTMLParser):
    """Visible text nodes and the readable attributes of one page."""

    def __init__(self):
        super().__init__()
        self.texts, self._skip = [], 0

    def handle_starttag(self, tag, attrs):
        if tag in ("script", "style", "code", "pre", "textarea"):
            self._skip += 1
        attrs = dict(attrs)
        for name in ATTRIBUTES:
            if attrs.get(name):
                self.texts.append(attrs[name])
        if tag in ("input", "button") and attrs.get("type") in ("submit", "button") and attrs.get("value"):
            self.texts.append(attrs["value"])

    def handle_endtag(self, tag):
        if tag in ("script", "style", "code", "pre", "textarea") and self._skip:
            self._skip -= 1

    def handle_data(self, data):
        if not self._skip and data.strip():
            self.texts.append(data.strip())


def _texts(html):
    parser = _Texts()
    parser.feed(html)
    return parser.texts


def _catalog():
    with open(CATALOG, "rb") as fh:
        return read_po(fh)


def test_the_catalog_translates_every_message():
    missing = [m.id for m in _catalog() if m.id and (m.fuzzy or not (
        all(m.string) if isinstance(m.string, tuple) else m.string))]
    assert missing == []


@pytest.fixture
def chinese_world(factory, client):
    """Every kind of object the pages show, and a zh_CN admin logged in."""
    users = factory.standard()
    for user in users.values():
        user.locale = "zh_CN"
    db.session.commit()
    tasks = factory.tasks(4, starter=users["admin"])
    engine.decide(tasks[0].id, users["alice"], "approve", None, GOOD_FORM)
    db.session.commit()
    batch = factory.batch(users["alice"], tasks[1:3], form={"amount": 5, "category": "Travel"})
    users["alice"].disabled = True  # the batch fails with a user error: items with errors, retries
    db.session.commit()
    runner.run_inline(batch.id)
    users["alice"].disabled = False
    db.session.commit()
    return users, tasks, batch


def _data_words(users):
    """Words that come from the test's data, not from the interface."""
    words = set(users) | {"Admin"}
    for text in db.session.execute(db.select(Instance.title)).scalars():
        words.update(ENGLISH_WORD.findall(text))
    for definition in db.session.execute(db.select(ProcessDefinition)).scalars():
        words.update(ENGLISH_WORD.findall(definition.name))
        words.add(definition.key)
        for node in definition.nodes:
            words.update(ENGLISH_WORD.findall(node.name))
            words.add(node.key)
            for field in node.fields:
                words.update(ENGLISH_WORD.findall(str(field.get("label", ""))))
                words.add(field["key"])
                words.update(str(option) for option in field.get("options", []))
                for column in field.get("columns", []):
                    words.update(ENGLISH_WORD.findall(str(column.get("label", ""))))
    for number in db.session.execute(db.select(Batch.number)).scalars():
        words.add(number)
    return words


def _pages(users, tasks, batch):
    item = db.session.execute(db.select(BatchItem).where(BatchItem.batch_id == batch.id)).scalars().first()
    node_id, process_id = tasks[0].node_id, tasks[0].node.process_id
    alice = db.session.execute(db.select(User).where(User.username == "alice")).scalar_one()
    return ["/", f"/?node_id={node_id}", f"/tasks/{tasks[3].id}", f"/instances/{tasks[0].instance_id}",
            "/batches", f"/batches/{batch.id}", f"/batches/{batch.id}/items/{item.id}", "/attention",
            "/imports", f"/nodes/{node_id}/import", "/account/password",
            "/admin/processes", f"/admin/processes/{process_id}", "/admin/users", f"/admin/users/{alice.id}",
            "/admin/instances", "/admin/health", "/no-such-page"]


def test_no_page_shows_english_interface_text_to_a_chinese_reader(client, chinese_world):
    users, tasks, batch = chinese_world
    login(client, "admin")
    client.post("/lang/zh_CN", data={"csrf_token": csrf_token(client, "/")})
    messages = {m.id for m in _catalog() if isinstance(m.id, str) and m.id and "%(" not in m.id}
    data = _data_words(users)
    problems = {}
    for url in _pages(users, tasks, batch):
        response = client.get(url)
        assert response.status_code in (200, 404), (url, response.status_code)
        html = response.get_data(as_text=True)
        assert '<html lang="zh-CN">' in html, url
        for text in _texts(html):
            english = [word for word in ENGLISH_WORD.findall(text) if word not in KEPT and word not in data]
            if text in messages or english:
                problems.setdefault(url, []).append(text)
    for url, texts in problems.items():
        print(url, texts)
    assert problems == {}
