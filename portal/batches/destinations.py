"""Where each item's decision sent its instance: the next step(s), the end (approved or rejected), or waiting.

A decision opens the tasks the engine has ready after it (``Task.opened_by_id`` names the decided task), or
finishes the instance (its ``finished_at`` is the decided task's ``completed_at``), or neither: a branch of a
parallel split reached its join and waits for the others. ``item_destinations`` answers for one page of items,
``destination_counts`` for a whole batch when it finishes (kept in ``Batch.destinations`` for its page).
"""
from dataclasses import dataclass, field

from flask_babel import lazy_gettext as _l

from portal.infra.extensions import db
from portal.models import BatchItem, Instance, Node, Task
from portal.models.base import chunks

END_LABELS = {"approved": _l("Completed (approved)"), "rejected": _l("Ended (rejected)"),
              "waiting": _l("Waits for the parallel steps")}


@dataclass
class Destination:
    kind: str  # next | approved | rejected | waiting
    nodes: list = field(default_factory=list)  # names of the steps opened, for "next"


def item_destinations(task_ids):
    """{task id: Destination} for decided tasks among ``task_ids``."""
    task_ids = sorted(set(task_ids))
    opened, decided = {}, {}
    for chunk in chunks(task_ids):
        for opened_by, name in db.session.execute(
                db.select(Task.opened_by_id, Node.name).join(Node, Node.id == Task.node_id)
                .where(Task.opened_by_id.in_(chunk)).order_by(Task.id)):
            names = opened.setdefault(opened_by, [])
            if name not in names:
                names.append(name)
        for task_id, completed_at, status, finished_at in db.session.execute(
                db.select(Task.id, Task.completed_at, Instance.status, Instance.finished_at)
                .join(Instance, Instance.id == Task.instance_id)
                .where(Task.id.in_(chunk), Task.status == "done")):
            decided[task_id] = (completed_at, status, finished_at)
    result = {}
    for task_id, (completed_at, status, finished_at) in decided.items():
        if task_id in opened:
            result[task_id] = Destination("next", opened[task_id])
        elif status in ("approved", "rejected") and finished_at == completed_at:
            result[task_id] = Destination(status)
        else:
            result[task_id] = Destination("waiting")
    return result


def destination_counts(batch):
    """[(kind, name, count)] over the batch's successful items, largest first: kind "next" with a step's
    name, or "end" with approved|rejected (shown through END_LABELS in the reader's language)."""
    succeeded = (db.select(BatchItem.task_id)
                 .where(BatchItem.batch_id == batch.id, BatchItem.status == "success").scalar_subquery())
    rows = db.session.execute(
        db.select(Node.name, db.func.count(db.distinct(Task.opened_by_id)))
        .join(Node, Node.id == Task.node_id).where(Task.opened_by_id.in_(succeeded))
        .group_by(Node.name)).all()
    decided = db.aliased(Task)
    ends = db.session.execute(
        db.select(Instance.status, db.func.count())
        .select_from(decided).join(Instance, Instance.id == decided.instance_id)
        .where(decided.id.in_(succeeded), Instance.finished_at == decided.completed_at,
               Instance.status.in_(("approved", "rejected")))
        .group_by(Instance.status)).all()
    counts = [("next", name, count) for name, count in rows]
    counts += [("end", status, count) for status, count in ends]
    return sorted(counts, key=lambda entry: (-entry[2], entry[0] == "end", entry[1]))
