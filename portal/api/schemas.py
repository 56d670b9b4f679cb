"""JSON Schemas (Draft 2020-12) of the API's requests and answers.

The request schemas are what ``portal.api.validation`` checks every request
against before its view runs, and what ``portal.api.openapi`` publishes: one
object for both, so the document cannot drift from the checks. Request
schemas are self-contained (no ``$ref``) so they can be checked on their own;
answers refer to the shared ``components`` below.

Answers list the keys the contract promises as ``required`` and allow more
keys: an answer may grow without breaking scripts, a request may not.
"""
from portal.batches.control import MAX_RETRY_IDS
from portal.batches.creation import TASK_ID_TEXT
from portal.models.base import MAX_ID
from portal.models.batches import BATCH_STATUSES, ITEM_STATUSES, MAX_CONCURRENCY

MAX_COMMENT = 2000
MAX_TITLE = 300
ACTIONS = ("approve", "reject")
IMPORT_MODES = ("single", "per_instance")
TASK_LIST_STATUSES = ("pending", "done")
INSTANCE_STATUSES = ("running", "approved", "rejected", "cancelled")
TASK_STATUSES = ("pending", "done", "recalled", "cancelled")
# The values a multipart flag accepts; anything else is a 400, not a silent "no".
FLAG_VALUES = ("1", "0", "true", "false", "yes", "no")
FLAG_TRUE = ("1", "true", "yes")
XLSX_MEDIA_TYPE = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"


def ref(name):
    return {"$ref": f"#/components/schemas/{name}"}


def nullable(schema):
    """``schema`` or JSON null (OpenAPI 3.1 spells it with a type list)."""
    return {"anyOf": [schema, {"type": "null"}]}


ID = {"type": "integer", "minimum": 1, "maximum": MAX_ID}
COUNT = {"type": "integer", "minimum": 0}
TEXT = {"type": "string"}
TIME = {"type": "string", "format": "date-time"}

# --- pieces of requests ----------------------------------------------------------------
# An optional field may be null, which means the same as leaving it out (as
# the API always took it): its type is a list with "null".

# A node's form: its keys and values depend on the node, so the view checks
# them against the node's fields (unknown keys, types, required ones).
FORM = {"type": ["object", "null"],
        "description": "The node's form values by field key (GET /nodes lists each node's fields)."}
ACTION = {"type": "string", "enum": list(ACTIONS)}
COMMENT = {"type": ["string", "null"], "maxLength": MAX_COMMENT}
# Task ids of a batch: numbers, or numbers written as text (as forms send
# them). Any id the caller may not act on becomes an ignored item. (One
# schema, not anyOf: "pattern" applies to text only, the bounds to numbers
# only, and a batch may list 50,000 ids.)
TASK_ID = {"type": ["integer", "string"], "minimum": -MAX_ID, "maximum": MAX_ID,
           "pattern": rf"^\s*{TASK_ID_TEXT.pattern}\s*$"}

START_INSTANCE = {
    "type": "object", "additionalProperties": False, "required": ["process", "title"],
    "properties": {
        "process": {"type": "string", "description": "The process definition's key."},
        "title": {"type": "string", "minLength": 1, "maxLength": MAX_TITLE},
        "data": {"type": ["object", "null"], "description": "The instance's variables."},
    },
}

DECISION = {
    "type": "object", "additionalProperties": False, "required": ["action"],
    "properties": {"action": ACTION, "comment": COMMENT, "form": FORM},
}

CREATE_BATCH = {
    "type": "object", "additionalProperties": False, "required": ["node_id", "action"],
    "description": "Either `task_ids`, or `all_pending: true` with an optional `filter`.",
    "properties": {
        "node_id": {"type": "integer", "description": "The node whose tasks are approved."},
        "task_ids": {"type": "array", "minItems": 1, "items": TASK_ID},
        "all_pending": {"type": ["boolean", "null"]},
        "filter": {"type": ["object", "null"], "additionalProperties": False,
                   "properties": {"title_contains": {"type": ["string", "null"],
                                                     "maxLength": MAX_TITLE}}},
        "action": ACTION, "comment": COMMENT, "form": FORM,
        "concurrency": {"type": ["integer", "null"], "minimum": 1, "maximum": MAX_CONCURRENCY},
    },
}

RETRY = {
    "type": "object", "additionalProperties": False,
    "properties": {"item_ids": {"type": ["array", "null"], "maxItems": MAX_RETRY_IDS,
                                "items": ID, "description": "None: every failed item."}},
}

# Multipart fields arrive as text; integer fields hold ASCII digits only.
IMPORT_FORM = {
    "type": "object", "additionalProperties": False, "required": ["file", "node_id", "mode"],
    "properties": {
        "file": {"type": "string", "format": "binary", "contentMediaType": XLSX_MEDIA_TYPE,
                 "description": "A filled template or error workbook (.xlsx)."},
        "node_id": ID,
        "mode": {"type": "string", "enum": list(IMPORT_MODES)},
        "dry_run": {"type": "string", "enum": list(FLAG_VALUES),
                    "description": "1, true or yes: check the file and answer a preview; "
                                   "nothing is created."},
        "concurrency": {"type": "integer", "minimum": 1, "maximum": MAX_CONCURRENCY},
    },
}

# --- query parameters --------------------------------------------------------------------

LIMIT = {"type": "integer", "minimum": 1, "maximum": 500, "default": 50}
CURSOR = {"type": "integer", "minimum": 0, "maximum": MAX_ID,
          "description": "The `next_cursor` of the previous page."}
# An instance's history and tasks: one page holds every entry of all but the longest instances.
INSTANCE_PAGE_LIMIT = 500
PART_LIMIT = {"type": "integer", "minimum": 1, "maximum": INSTANCE_PAGE_LIMIT, "default": INSTANCE_PAGE_LIMIT}

# --- answers -------------------------------------------------------------------------------

COMPONENTS = {
    "Error": {
        "type": "object", "required": ["error"],
        "properties": {
            "error": {"type": "string", "minLength": 1, "description": "Readable message."},
            "errors": {"type": "object", "additionalProperties": {"type": "string"},
                       "description": "A message per field at fault (dotted for nested "
                                      "fields, e.g. `filter.title_contains`)."},
        },
    },
    "Task": {
        "type": "object",
        "required": ["id", "instance_id", "title", "node_id", "status", "locked_by"],
        "properties": {
            "id": ID, "instance_id": ID, "title": TEXT, "node_id": ID,
            "status": {"type": "string", "enum": list(TASK_STATUSES)},
            "outcome": nullable(ACTION), "assignee": nullable(TEXT),
            "locked_by": nullable(TEXT), "completed_at": nullable(TIME),
        },
    },
    "StartedInstance": {
        "type": "object", "required": ["id", "title", "status", "tasks"],
        "properties": {
            "id": ID, "title": TEXT,
            "status": {"type": "string", "enum": list(INSTANCE_STATUSES)},
            "tasks": {"type": "array", "items": {
                "type": "object", "required": ["id", "node_id", "assignee"],
                "properties": {"id": ID, "node_id": ID, "assignee": nullable(TEXT)}}},
        },
    },
    # A Task with the key of its node (an instance's tasks span several nodes).
    "InstanceTask": {"allOf": [ref("Task"), {"type": "object", "required": ["node_key"],
                                             "properties": {"node_key": TEXT}}]},
    "HistoryEntry": {
        "type": "object",
        "required": ["at", "user", "on_behalf_of", "action", "node_key", "comment", "form",
                     "batch_item_id"],
        "properties": {
            "at": TIME, "user": {**nullable(TEXT), "description": "Who acted."},
            "on_behalf_of": {**nullable(TEXT), "description": "Whose decision it stands as, when "
                             "`user` decided for them (a batch item `user` corrected); else null."},
            "action": {"type": "string", "description": "start, approve, reject, countersign, "
                                                        "sign, recall, suspend or resume."},
            "node_key": nullable(TEXT), "comment": nullable(TEXT),
            "form": nullable({"type": "object"}), "batch_item_id": nullable(ID),
        },
    },
    "Instance": {
        "type": "object",
        "required": ["id", "title", "process", "version", "status", "suspended", "variables",
                     "created_by", "created_at", "finished_at", "current", "tasks",
                     "all_tasks", "history", "all_tasks_next_cursor", "history_next_cursor"],
        "properties": {
            "id": ID, "title": TEXT,
            "status": {"type": "string", "enum": list(INSTANCE_STATUSES)},
            "suspended": {"type": "boolean"},
            "process": {"type": "string", "description": "The process definition's key."},
            "version": COUNT, "process_name": TEXT,
            "variables": {"type": "object", "description": "The instance's data: what it was "
                          "started with, and each completed task's form values and `action`."},
            "created_by": nullable(TEXT), "created_at": TIME, "finished_at": nullable(TIME),
            "current": {"type": "array", "description": "Where the instance waits.", "items": {
                "type": "object", "required": ["task_id", "node_key", "node_name", "assignee"],
                "properties": {"task_id": ID, "node_key": TEXT, "node_name": TEXT,
                               "assignee": nullable(TEXT)}}},
            "tasks": {"type": "array", "items": ref("InstanceTask"),
                      "description": "The pending tasks."},
            "all_tasks": {"type": "array", "items": ref("InstanceTask"),
                          "description": "Every task, oldest first: `tasks_limit` of them after "
                                         "`tasks_cursor`."},
            "all_tasks_next_cursor": {**nullable(ID), "description": "The `tasks_cursor` of the "
                                      "next page of `all_tasks`; null on the last."},
            "history": {"type": "array", "items": ref("HistoryEntry"),
                        "description": "What happened, oldest first: `history_limit` entries "
                                       "after `history_cursor`."},
            "history_next_cursor": {**nullable(ID), "description": "The `history_cursor` of the "
                                    "next page of `history`; null on the last."},
        },
    },
    "Node": {
        "type": "object", "required": ["id", "key", "name", "process", "version", "pending"],
        "properties": {
            "id": ID, "key": TEXT, "name": TEXT, "process": TEXT, "version": COUNT,
            "pending": COUNT,
            "fields": {"type": "array", "description": "The node's form fields.",
                       "items": {"type": "object", "required": ["key", "type"],
                                 "properties": {"key": TEXT, "label": TEXT, "type": TEXT}}},
        },
    },
    "Batch": {
        "type": "object",
        "required": ["id", "number", "status", "node_id", "mode", "total", "pending", "success",
                     "failed", "ignored", "concurrency", "created_by", "created_at",
                     "updated_at", "finished_at", "has_error_file"],
        "description": "total = pending + running + success + failed + ignored; cancelled "
                       "items count under ignored and also under cancelled.",
        "properties": {
            "id": ID, "number": nullable(TEXT),
            "status": {"type": "string", "enum": list(BATCH_STATUSES)},
            "node_id": ID, "mode": {"type": "string", "enum": ["form", *IMPORT_MODES]},
            "action": nullable(ACTION),
            "total": COUNT, "pending": COUNT, "running": COUNT, "success": COUNT,
            "failed": COUNT, "ignored": COUNT, "cancelled": COUNT,
            "concurrency": {"type": "integer", "minimum": 1},
            "created_by": nullable(TEXT), "created_at": TIME, "updated_at": TIME,
            "finished_at": nullable(TIME), "with_errors": {"type": "boolean"},
            "has_error_file": {"type": "boolean"}, "source_batch_id": nullable(ID),
        },
    },
    "BatchItem": {
        "type": "object",
        "required": ["id", "task_id", "status", "error", "error_code", "retry_count",
                     "finished_at"],
        "properties": {
            "id": ID, "task_id": {"type": "integer"},
            "status": {"type": "string", "enum": list(ITEM_STATUSES)},
            "error": {**nullable(TEXT), "description": "Why the item did not succeed, in English."},
            "error_code": {**nullable(TEXT), "description": (
                "Stable: validation, a reason the item was ignored (done, suspended, "
                "unavailable...), a user error (user_disabled, unknown_assignee, no_assignee, "
                "engine_refused, user), unexpected, lease_expired or cancelled.")},
            "error_kind": nullable(TEXT),
            "field_errors": nullable({"type": "object"}), "retry_count": COUNT,
            "attempts": COUNT, "source_ref": nullable(TEXT), "finished_at": nullable(TIME),
        },
    },
    "Preview": {
        "type": "object", "required": ["valid", "invalid"],
        "properties": {
            "valid": COUNT,
            "skipped": {"type": "integer", "minimum": 0,
                        "description": "Rows or sheets that name a task and hold nothing else."},
            "invalid": {"type": "array", "items": {
                "type": "object", "required": ["task_id", "errors"],
                "description": "A row (single mode) or a sheet (per-instance mode) that "
                               "cannot be imported.",
                "properties": {"row": {"type": "integer"}, "sheet": TEXT,
                               "task_id": nullable({"type": "integer"}),
                               "errors": {"type": "object",
                                          "additionalProperties": {"type": "string"}},
                               "reason": TEXT}}},
        },
    },
}


def page_of(key, item):
    """``{key: [item], "next_cursor": id or null}``."""
    return {"type": "object", "required": [key, "next_cursor"],
            "properties": {key: {"type": "array", "items": ref(item)},
                           "next_cursor": nullable(ID)}}


def wrapped(key, item):
    return {"type": "object", "required": [key], "properties": {key: ref(item)}}
