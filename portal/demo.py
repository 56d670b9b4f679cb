"""Demo data: users, three process definitions and a few hundred pending tasks.

Two JSON definitions (contract section 5) and the BPMN example ``examples/expense.bpmn`` (a condition on the
amount, a reject that goes back for revision, a 会签 by the signers named at start).

Idempotent: users and definitions are created once; tasks are added only
while the demo users have none.
"""
import os

from portal.accounts import create_user, find_user
from portal.infra.extensions import db
from portal.models import Task
from portal.workflow.engine import start_instance
from portal.workflow.process_files import load_definition, load_process_file

DEMO_PASSWORD = "demo-pass-123"
DEMO_USERS = [
    ("admin", "admin", "", "en"),
    ("supervisor", "supervisor", "", "en"),
    ("alice", "user", "finance", "en"),
    ("bob", "user", "finance", "zh_CN"),
    ("carol", "user", "directors", "zh_CN"),
]
EXAMPLE_BPMN = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "examples",
                            "expense.bpmn")
BPMN_INSTANCES = 40

EXPENSE = {
    "key": "expense", "name": "Expense claim",
    "nodes": [
        {"key": "manager", "name": "Manager review", "assignee": "user:alice",
         "fields": [
             {"key": "amount", "label": "Amount", "type": "number", "required": True, "min": 0},
             {"key": "category", "label": "Category", "type": "select",
              "options": ["Travel", "Meals"], "required": True},
             {"key": "paid_on", "label": "Paid on", "type": "date"},
             {"key": "urgent", "label": "Urgent", "type": "boolean"},
             {"key": "note", "label": "Note", "type": "text", "max_length": 200},
             {"key": "lines", "label": "Lines", "type": "table",
              "columns": [{"key": "item", "label": "Item", "type": "text", "required": True},
                          {"key": "cost", "label": "Cost", "type": "number"}]}]},
        {"key": "finance", "name": "Finance review", "assignee": "role:finance", "fields": []},
    ],
}

LEAVE = {
    "key": "leave", "name": "Leave request",
    "nodes": [
        {"key": "lead", "name": "Team lead", "assignee": "user:carol",
         "fields": [{"key": "days", "label": "Days", "type": "number", "required": True,
                     "min": 0.5, "max": 30},
                    {"key": "reason", "label": "Reason", "type": "text", "max_length": 100}]},
        {"key": "hr", "name": "HR", "assignee": "user:bob", "fields": []},
    ],
}


def load_demo(tasks_per_process=150):
    """Create what is missing; returns a summary dict."""
    created_users = 0
    for name, role, workflow_roles, locale in DEMO_USERS:
        if find_user(name) is None:
            create_user(name, DEMO_PASSWORD, role, workflow_roles, locale)
            created_users += 1
    for definition in (EXPENSE, LEAVE):
        load_definition(definition)
    with open(EXAMPLE_BPMN, "rb") as fh:
        example, _created = load_process_file(EXAMPLE_BPMN, fh.read())
    admin = find_user("admin")
    created_tasks = 0
    if db.session.execute(db.select(db.func.count(Task.id))).scalar() == 0:
        for i in range(1, tasks_per_process + 1):
            start_instance("expense", f"Expense claim #{i:04d} - {'Travel' if i % 2 else 'Meals'}",
                           {"amount": i * 10}, admin)
            start_instance("leave", f"Leave request #{i:04d}", {}, admin)
            created_tasks += 2
        bob = find_user("bob")
        for i in range(1, BPMN_INSTANCES + 1):
            start_instance(example.key, f"Expense claim (BPMN) #{i:04d}", {"signers": ["bob", "carol"]}, bob)
            created_tasks += 1
    db.session.flush()
    return {"users": created_users, "tasks": created_tasks}
