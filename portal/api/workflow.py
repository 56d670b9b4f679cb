"""Instances, nodes and tasks: start, show, list, approve/reject, recall.

Each view reads and checks its input, calls one workflow service and commits;
the service's WorkflowError becomes the contract's JSON error (404, 409, 422,
403) in ``portal.api``. Request bodies are strict: an unknown key is a 422
naming it, so a typo such as ``"coment"`` is reported instead of dropped.
"""
from flask import request
from flask_babel import gettext as _

from portal.api import ApiError, api_user, bp, int_arg, json_body, paginate
from portal.api import schemas
from portal.api.operations import Param, Reply, operation, page_reply
from portal.errors import ValidationFailed
from portal.infra.extensions import db
from portal.models import Task, User
from portal.models.base import MAX_ID
from portal.workflow import engine, listing, visibility



# --- input checks shared by the API modules ----------------------------------------

def invalid(field, message):
    """A 422 about one request field, whose ``error`` names the field too."""
    return ValidationFailed({field: message}, f"{field}: {message}")


def only_fields(body, allowed, prefix=""):
    """422 naming each key of ``body`` that the endpoint does not know.

    ``prefix`` names the enclosing object in the error keys (``"filter."``).
    """
    unknown = sorted(prefix + str(key) for key in body if key not in allowed)
    if unknown:
        raise ValidationFailed({key: _("Unknown field.") for key in unknown},
                               _("Unknown fields: %(names)s.", names=", ".join(unknown)))


def check_form_shape(node, form):
    """The form must be an object holding only the node's field keys.

    The engine drops unknown keys; a script sending ``"amout"`` should hear
    about it rather than see the value vanish.
    """
    if form is None:
        return
    if not isinstance(form, dict):
        raise invalid("form", _("Must be an object."))
    only_fields(form, {field["key"] for field in node.fields})


# --- JSON shapes --------------------------------------------------------------------

def iso_time(value):
    """A naive UTC timestamp as the API writes every time: ISO 8601 with a ``Z``."""
    return value.isoformat() + "Z" if value is not None else None


def assignee_label(task):
    """``user:NAME``, ``role:NAME`` or ``candidates`` (the node's candidate users and groups)."""
    if task.assignee_role:
        return f"role:{task.assignee_role}"
    return f"user:{task.assignee_user.username}" if task.assignee_user else "candidates"


def task_to_dict(task):
    holder = task.lock_holder if visibility.lock_active(task) else None
    return {
        "id": task.id, "instance_id": task.instance_id, "title": task.instance.title,
        "node_id": task.node_id, "status": task.status, "outcome": task.outcome,
        "assignee": assignee_label(task),
        "locked_by": holder.username if holder is not None else None,
        "completed_at": iso_time(task.completed_at),
    }


def instance_to_dict(instance):
    return {
        "id": instance.id, "title": instance.title, "status": instance.status,
        "tasks": [{"id": t.id, "node_id": t.node_id, "assignee": assignee_label(t)}
                  for t in instance.tasks],
    }


def history_to_dict(entry):
    return {"at": iso_time(entry.created_at),
            "user": entry.user.username if entry.user else None,
            "on_behalf_of": entry.on_behalf_of.username if entry.on_behalf_of else None,
            "action": entry.action,
            "node_key": entry.node.key if entry.node else None, "comment": entry.comment,
            "form": entry.form, "batch_item_id": entry.batch_item_id}


def instance_detail_to_dict(instance, history, all_tasks):
    """``instance_to_dict`` grown into everything its reader may know about it.

    ``tasks`` holds the pending tasks (contract section 4), ``all_tasks`` every
    task oldest first (done, recalled, cancelled too), ``current`` where the
    instance waits, and ``history`` what happened, oldest first. ``history`` and
    ``all_tasks`` are pages (``portal.infra.paging.Page``), each with its next cursor.
    """
    pending = [t for t in instance.tasks if t.status == "pending"]
    creator = db.session.get(User, instance.created_by_id) if instance.created_by_id else None
    process = instance.process

    def with_node(task):
        return {**task_to_dict(task), "node_key": task.node.key}

    return {
        **instance_to_dict(instance),
        "suspended": instance.suspended,
        "process": process.key, "version": process.version, "process_name": process.name,
        "variables": instance.data or {},
        "created_by": creator.username if creator else None,
        "created_at": iso_time(instance.created_at), "finished_at": iso_time(instance.finished_at),
        "current": [{"task_id": t.id, "node_key": t.node.key, "node_name": t.node.name,
                     "assignee": assignee_label(t)} for t in pending],
        "tasks": [with_node(t) for t in pending],
        "all_tasks": [with_node(t) for t in all_tasks.rows],
        "all_tasks_next_cursor": all_tasks.next_cursor,
        "history": [history_to_dict(entry) for entry in history.rows],
        "history_next_cursor": history.next_cursor,
    }


def node_to_dict(node, pending):
    return {"id": node.id, "key": node.key, "name": node.name, "process": node.process.key,
            "version": node.process.version, "pending": pending, "fields": node.fields}


# --- instances and nodes ------------------------------------------------------------

@bp.post("/instances")
@operation("Start an instance", tag="Instances", body=schemas.START_INSTANCE,
           description="Starts the latest version of a process; answers its first tasks.",
           replies={201: Reply("The new instance.",
                               schemas.wrapped("instance", "StartedInstance"))},
           errors=(400, 413, 422))
def start_instance():
    body = json_body()
    only_fields(body, {"process", "title", "data"})
    instance = engine.start_instance(body.get("process"), body.get("title"), body.get("data"),
                                     api_user())
    db.session.commit()
    return {"instance": instance_to_dict(instance)}, 201


@bp.get("/instances/<int:instance_id>")
@operation("An instance", tag="Instances",
           description="Its process, variables, pending tasks, every task and its history. "
                       "Visible to whoever started it, is or was asked to handle one of its "
                       "tasks, and admins; to anyone else it is missing (404). A long history "
                       "and a long list of tasks come in pages, each with its own cursor.",
           query=[Param("history_limit", schemas.PART_LIMIT, "History entries in this answer."),
                  Param("history_cursor", schemas.CURSOR,
                        "The `history_next_cursor` of the previous answer."),
                  Param("tasks_limit", schemas.PART_LIMIT, "Tasks in `all_tasks`."),
                  Param("tasks_cursor", schemas.CURSOR,
                        "The `all_tasks_next_cursor` of the previous answer.")],
           replies={200: Reply("The instance.", schemas.wrapped("instance", "Instance"))},
           errors=(400, 404))
def show_instance(instance_id):
    # Ids outside 1..MAX_ID never reach here: the app's <int:> converter answers 404 for them.
    instance = visibility.visible_instance(api_user(), instance_id)
    limit, high = schemas.INSTANCE_PAGE_LIMIT, MAX_ID
    history = listing.history_page(instance, limit=int_arg("history_limit", limit, 1, limit),
                                   after=int_arg("history_cursor", None, 0, high))
    all_tasks = listing.tasks_page(instance, limit=int_arg("tasks_limit", limit, 1, limit),
                                   after=int_arg("tasks_cursor", None, 0, high))
    return {"instance": instance_detail_to_dict(instance, history, all_tasks)}


@bp.get("/nodes")
@operation("Nodes with pending tasks", tag="Nodes",
           query=[Param("process", {"type": "string"}, "Only this process (its key).")],
           replies={200: Reply("Nodes where the caller has pending tasks, with how many.", {
               "type": "object", "required": ["nodes"],
               "properties": {"nodes": {"type": "array", "items": schemas.ref("Node")}}})})
def list_nodes():
    """Nodes where the caller has pending tasks, with how many; ``?process=key`` narrows."""
    process_key = request.args.get("process") or None
    counts = visibility.pending_counts_by_node(api_user(), process_key)
    return {"nodes": [node_to_dict(node, count) for node, count in counts]}


# --- tasks ----------------------------------------------------------------------------

TASK_STATUSES = ("pending", "done")


@bp.get("/tasks")
@operation("The caller's tasks", tag="Tasks",
           query=[Param("node_id", schemas.ID, "Only tasks at this node."),
                  Param("status", {"type": "string", "enum": list(schemas.TASK_LIST_STATUSES),
                                   "default": "pending"},
                        "pending: tasks the caller may handle now; done: tasks the caller "
                        "completed."),
                  Param("limit", schemas.LIMIT), Param("cursor", schemas.CURSOR)],
           replies={200: page_reply("Oldest first, `limit` at a time.", "tasks", "Task")})
def list_tasks():
    """The caller's tasks, oldest first, ``limit`` (1-500) at a time after ``cursor``.

    ``status=pending`` (the default): tasks the caller may handle now, of
    running instances. ``status=done``: tasks the caller completed (approved
    or rejected), the ones a recall may start from. Any other status is a 400.
    ``node_id`` narrows either list to one node.
    """
    user = api_user()
    status = request.args.get("status") or "pending"
    if status not in TASK_STATUSES:
        raise ApiError(400, _("status must be pending or done."))
    node_id = int_arg("node_id", minimum=1, maximum=MAX_ID)
    query = listing.tasks_of(user, done=(status == "done"), node_id=node_id)
    tasks, next_cursor = paginate(query, Task.id)
    return {"tasks": [task_to_dict(t) for t in tasks], "next_cursor": next_cursor}


def _visible_task(task_id):
    """The task, locked, or 404 when the caller may not see it.

    Visibility is checked before any state is revealed: ``engine.decide``
    alone would report a done task as a conflict even to someone who could
    never see it. The row lock comes first so that everything read after it
    (the instance, countersigns) is current.
    """
    if task_id > MAX_ID:
        raise ApiError(404, _("Task not found."))
    return visibility.visible_task(api_user(), task_id, for_update=True)


@bp.post("/tasks/<int:task_id>/approve")
@operation("Approve or reject a task", tag="Tasks", body=schemas.DECISION,
           description="The form's keys are the node's field keys; `form` is required "
                       "to approve when the node has required fields.",
           replies={200: Reply("The completed task.", schemas.wrapped("task", "Task"))},
           errors=(400, 403, 404, 409, 413, 422))
def approve_task(task_id):
    """Approve or reject: ``{"action": "approve"|"reject", "comment": str, "form": {}}``."""
    body = json_body()
    only_fields(body, {"action", "comment", "form"})
    user = api_user()
    task = _visible_task(task_id)
    visibility.check_can_act(task, user)  # a state conflict outranks the form's faults
    check_form_shape(task.node, body.get("form"))
    task = engine.decide(task_id, user, body.get("action"), body.get("comment"),
                         body.get("form"))
    db.session.commit()
    return {"task": task_to_dict(task)}


@bp.post("/tasks/<int:task_id>/recall")
@operation("Recall an approval", tag="Tasks",
           description="The caller takes the instance back to a task they approved, while "
                       "the next task is untouched.",
           replies={200: Reply("The new pending task.", schemas.wrapped("task", "Task"))},
           errors=(400, 403, 404, 409))
def recall_task(task_id):
    """Take an instance back to a task the caller approved; answers the new task."""
    _visible_task(task_id)
    task = engine.recall(task_id, api_user())
    db.session.commit()
    return {"task": task_to_dict(task)}
