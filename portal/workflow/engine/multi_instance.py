"""The most elements of a multi-instance (会签) collection: ``MAX_MULTI_INSTANCE`` (contract section 2).

Each element of a collection becomes an engine task and a Task row in the decision that enters the node:
15,000 names took one decision 22 s (other requests waited behind it) and made an instance page of
megabytes. A longer collection is refused with a ``ValidationFailed`` naming its variable, before anything
is written, at two places:

- when an instance starts (``check_start``): every collection variable of the process's multi-instance
  nodes in the start data, whether the node comes first or later;
- when the engine enters a multi-instance node (``guard``, installed on the node's spec by
  ``runtime.specs``): the collection the node reads then, whichever way it got there (a form value, an
  instance started before the cap was lower). The engine raises ``CollectionTooLong`` before it makes
  the first element's task; ``actions._engine_step`` turns it into the refusal.
"""
from collections.abc import Sized

from portal.errors import ValidationFailed
from portal.messages import message as _

DEFAULT_LIMIT = 200


class CollectionTooLong(Exception):
    """The engine was about to expand a collection longer than the cap."""

    def __init__(self, variable, size, limit):
        super().__init__(f"{variable}: {size} elements, at most {limit}")
        self.variable, self.size, self.limit = variable, size, limit


def limit():
    """The cap of the app at work (the default outside an app, e.g. a migration)."""
    from flask import current_app, has_app_context
    if not has_app_context():
        return DEFAULT_LIMIT
    return current_app.config.get("MAX_MULTI_INSTANCE", DEFAULT_LIMIT)


def check(variable, value):
    """Raise ``CollectionTooLong`` when ``value`` (what the engine would expand) holds too many elements.

    The engine makes one task per element of any sized value, a string's characters included."""
    if isinstance(value, Sized):
        cap = limit()
        if len(value) > cap:
            raise CollectionTooLong(variable, len(value), cap)


def refusal(exc):
    """The 422 of a ``CollectionTooLong``: its variable as the field at fault."""
    problem = _("A multi-instance collection holds at most %(limit)s elements; this one holds %(size)s.",
                limit=exc.limit, size=exc.size)
    return ValidationFailed({exc.variable: problem}, f"{exc.variable}: {problem}")


def check_start(nodes, variables):
    """Refuse start data holding a collection of one of ``nodes`` (a process's nodes) beyond the cap."""
    for node in nodes:
        collection = (node.multi_instance or {}).get("collection")
        if collection and collection in variables:
            try:
                check(collection, variables[collection])
            except CollectionTooLong as exc:
                raise refusal(exc) from None


def guard(task_spec):
    """Check the collection of a multi-instance ``task_spec`` each time the engine enters it.

    Both kinds (parallel and sequential) hand the collection they are about to expand to
    ``init_data_output_with_input_data`` before the first element's task is made (the node's collection
    is its output too, as Camunda's ``camunda:collection``)."""
    expand = task_spec.init_data_output_with_input_data

    def checked(my_task, input_data):
        check(task_spec.data_output.bpmn_id, input_data)
        return expand(my_task, input_data)

    task_spec.init_data_output_with_input_data = checked
