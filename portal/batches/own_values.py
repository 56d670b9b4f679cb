"""Each task's own values, read in bulk: its instance's variables for its node's fields.

A batch sets only the fields its shared form holds; every other field keeps each
task's own value (contract section 4). The batch page says beforehand how many
tasks a "set the same value for all" replaces, and templates, error workbooks and
corrections show each task's values, so that what a person leaves as it is stays
as it was.
"""
from portal.infra.extensions import db
from portal.models import Instance, Task
from portal.models.base import chunks, is_db_id
from portal.workflow.forms import own_values, with_own_values


def _rows(node, task_ids):
    """(task id, own values) of the tasks of ``task_ids`` that exist, in chunks."""
    for chunk in chunks(sorted({i for i in task_ids if is_db_id(i)})):
        rows = db.session.execute(db.select(Task.id, Instance.data)
                                  .join(Instance, Task.instance_id == Instance.id)
                                  .where(Task.id.in_(chunk)))
        for task_id, data in rows:
            yield task_id, own_values(node.fields, data)


def by_task(node, task_ids):
    """{task id: its own values} of the tasks of ``task_ids`` that exist."""
    return dict(_rows(node, task_ids))


def holders(node, task_ids):
    """{field key: how many of ``task_ids`` hold a value of their own} for the fields a shared
    form may set: what ticking "set the same value for all" of that field replaces."""
    counts = {f["key"]: 0 for f in node.form_fields if not f.get("readonly")}
    for _task_id, values in _rows(node, task_ids):
        for key in values.keys() & counts.keys():
            counts[key] += 1
    return counts


def decision_over_own(node, decision, own):
    """``decision`` (action, comment, form) with its form over the task's ``own`` values:
    what the item is decided with, as a form or a workbook shows it."""
    decision = dict(decision or {})
    decision["form"] = with_own_values(node.fields, own, decision.get("form"))
    return decision
