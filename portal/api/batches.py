"""Batches: create, list, show, items, retry, pause, resume, cancel.

A batch is created here, handed to RQ once committed (``start_after_commit``);
if Redis is unreachable the batch waits in the database for recovery. Who may
see a batch: its creator, supervisors and admins; anyone else gets a 404.
Lists are oldest first, ``limit`` (1-500) at a time after ``cursor``.
"""
from flask import request
from flask_babel import gettext as _, lazy_gettext as _l
from sqlalchemy.orm import selectinload

from portal.api import ApiError, api_user, bp, json_body, paginate, schemas
from portal.api.operations import Param, Reply, operation, page_reply
from portal.api.workflow import check_form_shape, invalid, only_fields
from portal.batches import access, control, creation, dispatch
from portal.batches.item_errors import english_labels
from portal.batches.serialize import batch_to_dict, item_to_dict
from portal.errors import NotFound
from portal.infra.extensions import db
from portal.models import Batch, BatchItem
from portal.models.base import is_db_id
from portal.models.batches import BATCH_STATUSES, ITEM_STATUSES, item_statuses_of

CREATE_FIELDS = {"node_id", "task_ids", "all_pending", "filter", "action", "comment", "form",
                 "concurrency"}
TITLE_FILTER_MAX = schemas.MAX_TITLE  # an instance title is at most 300 characters


# --- reading the creation request ----------------------------------------------------

def _node(body):
    node_id = body.get("node_id")
    if node_id is None:
        raise invalid("node_id", _("This field is required."))
    if isinstance(node_id, bool) or not isinstance(node_id, int):
        raise invalid("node_id", _("Must be a whole number."))
    if not is_db_id(node_id):
        raise NotFound(_("Node not found."))
    return creation.get_node(node_id)


def _title_filter(body):
    """``filter.title_contains`` (or None); the stored filter says how ids were chosen."""
    raw = body.get("filter")
    if raw is None:
        return None
    if not isinstance(raw, dict):
        raise invalid("filter", _("Must be an object."))
    only_fields(raw, {"title_contains"}, prefix="filter.")
    title = raw.get("title_contains")
    if title is not None and not isinstance(title, str):
        raise invalid("filter.title_contains", _("Must be text."))
    if title and len(title) > TITLE_FILTER_MAX:
        raise invalid("filter.title_contains",
                      _("At most %(n)s characters.", n=TITLE_FILTER_MAX))
    return title or None


def _selection(body, user, node):
    """(task ids, stored filter) from ``task_ids`` or ``all_pending``."""
    all_pending = body.get("all_pending")
    if all_pending not in (None, False, True):
        raise invalid("all_pending", _("Must be true or false."))
    if all_pending and "task_ids" in body:
        raise invalid("task_ids", _("Send either task_ids or all_pending, not both."))
    if not all_pending:
        if "filter" in body:
            raise invalid("filter", _("A filter applies only with all_pending."))
        return creation.parse_task_ids(body.get("task_ids")), None
    # An empty result is for create_batch to report, with any fault of the form.
    return creation.all_pending_selection(user, node, _title_filter(body))


def _check_concurrency(value):
    if isinstance(value, (bool, float)):
        raise invalid("concurrency", _("Enter a whole number."))


BATCH_REPLY = Reply("The batch.", schemas.wrapped("batch", "Batch"))
LIST_PARAMS = [Param("limit", schemas.LIMIT), Param("cursor", schemas.CURSOR)]


@bp.post("/batches")
@operation("Create a batch", tag="Batches", body=schemas.CREATE_BATCH,
           description="Approves (or rejects) many tasks of one node with one shared form, in "
                       "the background. Ids that are not the caller's pending tasks there "
                       "become ignored items with a reason. An invalid shared form creates "
                       "nothing (422). The shared form sets only the fields it holds a value "
                       "for: every other field keeps each task's own value (its instance's "
                       "variable), and required fields are checked per item against that value "
                       "(an item lacking one fails with a field error).",
           replies={202: BATCH_REPLY}, errors=(400, 404, 413, 422),
           messages={("task_ids", keyword): _l("Task ids must be whole numbers.")
                     for keyword in ("type", "pattern", "minimum", "maximum")}
           | {("task_ids", "minItems"): _l("Choose at least one task.")})
def create_batch():
    """Approve many tasks of one node with one shared form; 202 with the new batch."""
    user = api_user()
    body = json_body()
    only_fields(body, CREATE_FIELDS)
    node = _node(body)
    check_form_shape(node, body.get("form"))
    _check_concurrency(body.get("concurrency"))
    task_ids, stored_filter = _selection(body, user, node)
    batch = creation.create_batch(
        user, node, task_ids=task_ids, action=body.get("action"), comment=body.get("comment"),
        form=body.get("form"), concurrency=body.get("concurrency"), filter=stored_filter)
    dispatch.start_after_commit(batch)
    db.session.commit()
    return {"batch": batch_to_dict(batch)}, 202


# --- reading batches ------------------------------------------------------------------

def _status_arg(allowed):
    status = request.args.get("status") or None
    if status is not None and status not in allowed:
        raise ApiError(400, _("status must be one of: %(names)s.", names=", ".join(allowed)))
    return status


def _batch(batch_id):
    return access.visible_batch(api_user(), batch_id if is_db_id(batch_id) else None)


@bp.get("/batches")
@operation("Batches", tag="Batches",
           query=[Param("status", {"type": "string", "enum": list(BATCH_STATUSES)}),
                  *LIST_PARAMS],
           replies={200: page_reply("The caller's batches (supervisors and admins: "
                                    "everyone's), oldest first.", "batches", "Batch")})
def list_batches():
    """The caller's batches (supervisors and admins: everyone's); ``?status=`` narrows."""
    query = access.visible_batches_query(api_user()).options(selectinload(Batch.created_by))
    status = _status_arg(BATCH_STATUSES)
    if status is not None:
        query = query.where(Batch.status == status)
    batches, next_cursor = paginate(query, Batch.id)
    return {"batches": [batch_to_dict(b) for b in batches], "next_cursor": next_cursor}


@bp.get("/batches/<int:batch_id>")
@operation("A batch", tag="Batches", replies={200: BATCH_REPLY}, errors=(400, 404))
def show_batch(batch_id):
    return {"batch": batch_to_dict(_batch(batch_id))}


@bp.get("/batches/<int:batch_id>/items")
@operation("A batch's items", tag="Batches",
           query=[Param("status", {"type": "string", "enum": list(ITEM_STATUSES)},
                        "failed includes import_failed."), *LIST_PARAMS],
           replies={200: page_reply("Oldest first.", "items", "BatchItem")}, errors=(400, 404))
def list_items(batch_id):
    """The batch's items; ``?status=failed`` includes items that failed at import."""
    batch = _batch(batch_id)
    query = db.select(BatchItem).where(BatchItem.batch_id == batch.id)
    status = _status_arg(ITEM_STATUSES)
    if status is not None:
        query = query.where(BatchItem.status.in_(item_statuses_of(status)))
    items, next_cursor = paginate(query, BatchItem.id)
    labels = english_labels(batch.node) if any(i.field_errors for i in items) else None
    return {"items": [item_to_dict(i, labels) for i in items], "next_cursor": next_cursor}


# --- steering batches -----------------------------------------------------------------

def _item_ids():
    """``item_ids`` from an optional JSON body; None means every failed item."""
    if not request.get_data():
        return None
    body = json_body()
    only_fields(body, {"item_ids"})
    raw = body.get("item_ids")
    if raw is None:
        return None
    if not isinstance(raw, list) or not all(is_db_id(v) for v in raw):
        raise invalid("item_ids", _("Must be a list of item ids."))
    return raw  # how many: control.retry's rule


@bp.post("/batches/<int:batch_id>/retry")
@operation("Retry failed items", tag="Batches", body=schemas.RETRY, body_required=False,
           description="Supervisors and admins. Items at BATCH_RETRY_LIMIT are not retried "
                       "(counted in `at_limit`), nor items whose values failed validation: "
                       "they need a correction (counted in `needs_correction`).",
           replies={202: Reply("The batch and how many items were retried.", {
               "type": "object", "required": ["batch", "retried"],
               "properties": {"batch": schemas.ref("Batch"), "retried": schemas.COUNT,
                              "at_limit": schemas.COUNT, "needs_correction": schemas.COUNT}})},
           errors=(400, 403, 404, 409, 413, 422),
           messages={(field, keyword): _l("Must be a list of item ids.")
                     for field in ("item_ids",) for keyword in ("type", "minimum", "maximum")}
           | {("item_ids", "maxItems"): _l(
               "At most %(n)s item ids; send none to retry every failed item.",
               n=control.MAX_RETRY_IDS)})
def retry_batch(batch_id):
    """Supervisors and admins retry failed items (all, or ``item_ids``) under the limit."""
    user = api_user()
    batch = _batch(batch_id)
    access.require_may_retry(user)
    item_ids = _item_ids()
    batch, retried, at_limit, needs_correction = control.retry(batch, user, item_ids)
    dispatch.start_after_commit(batch)
    db.session.commit()
    return {"batch": batch_to_dict(batch), "retried": retried, "at_limit": at_limit,
            "needs_correction": needs_correction}, 202


STEER_ERRORS = (400, 404, 409)


@bp.post("/batches/<int:batch_id>/pause")
@operation("Pause a batch", tag="Batches", replies={202: BATCH_REPLY}, errors=STEER_ERRORS)
def pause_batch(batch_id):
    batch = control.pause(_batch(batch_id), api_user())
    db.session.commit()
    return {"batch": batch_to_dict(batch)}, 202


@bp.post("/batches/<int:batch_id>/resume")
@operation("Resume a paused batch", tag="Batches", replies={202: BATCH_REPLY},
           errors=STEER_ERRORS)
def resume_batch(batch_id):
    batch = control.resume(_batch(batch_id), api_user())
    dispatch.start_after_commit(batch)
    db.session.commit()
    return {"batch": batch_to_dict(batch)}, 202


@bp.post("/batches/<int:batch_id>/cancel")
@operation("Cancel a batch", tag="Batches",
           description="Pending items are cancelled; items already running finish.",
           replies={202: BATCH_REPLY}, errors=STEER_ERRORS)
def cancel_batch(batch_id):
    batch = control.cancel(_batch(batch_id), api_user())
    db.session.commit()
    return {"batch": batch_to_dict(batch)}, 202
