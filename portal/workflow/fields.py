"""A node's field definitions, as both kinds of process file give them: which types and keys they may use.

A JSON file writes its nodes' fields directly (contract section 5); a BPMN file's ``camunda:formData`` is read
into the same field dicts (``portal.workflow.loading.form_data``). Both pass ``check_fields``, so both kinds of
file make the same fields. Values typed into a form are validated against these definitions by
``portal.workflow.forms``.
"""

FIELD_TYPES = ("text", "number", "date", "select", "boolean", "table")
COLUMN_TYPES = ("text", "number", "date", "select", "boolean")
# Names the task form and the templates use for themselves.
RESERVED_KEYS = {"action", "comment", "csrf_token", "task_id", "title", "error"}


def check_fields(fields, where, allowed, problems):
    """Add the problems of a list of field dicts to ``problems`` ({where: message}).

    ``where`` names the list in the keys (``nodes[0].fields``); ``allowed`` are the types it may use
    (``FIELD_TYPES``; a table's columns take ``COLUMN_TYPES``)."""
    if not isinstance(fields, list):
        problems[where] = "fields must be a list"
        return
    seen = set()
    for i, field in enumerate(fields):
        at = f"{where}[{i}]"
        if not isinstance(field, dict) or not isinstance(field.get("key"), str) or not field["key"]:
            problems[at] = "each field needs a key"
            continue
        if field["key"] in seen:
            problems[at] = f"duplicate field key {field['key']!r}"
        if field["key"] in RESERVED_KEYS:
            problems[at] = f"the key {field['key']!r} is reserved"
        seen.add(field["key"])
        kind = field.get("type", "text")
        if kind not in allowed:
            problems[at] = f"unknown type {kind!r}"
        if kind == "select" and not (isinstance(field.get("options"), list) and field["options"]):
            problems[at] = "a select field needs options"
        if kind == "table":
            check_fields(field.get("columns"), at + ".columns", COLUMN_TYPES, problems)
