"""Demo data: users, two process definitions and a few hundred pending tasks.

Idempotent: users and definitions are created once; tasks are added only
while the demo users have none.
"""
from portal.accounts import create_user, find_user
from portal.extensions import db
from portal.models import Task
from portal.workflow.definitions import load_definition
from portal.workflow.engine import start_instance

DEMO_PASSWORD = "demo-pass-123"
DEMO_USERS = [
    ("admin", "admin", "", "en"),
    ("supervisor", "supervisor", "", "en"),
    ("alice", "user", "finance", "en"),
    ("bob", "user", "finance", "zh_CN"),
    ("carol", "user", "", "zh_CN"),
]

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
    admin = find_user("admin")
    created_tasks = 0
    if db.session.execute(db.select(db.func.count(Task.id))).scalar() == 0:
        for i in range(1, tasks_per_process + 1):
            start_instance("expense", f"Expense claim #{i:04d} - {'Travel' if i % 2 else 'Meals'}",
                           {"amount": i * 10}, admin)
            start_instance("leave", f"Leave request #{i:04d}", {}, admin)
            created_tasks += 2
    db.session.flush()
    return {"users": created_users, "tasks": created_tasks}
