"""Process instances on SpiffWorkflow: the engine's state in, the user tasks it has ready out.

The portal keeps SpiffWorkflow behind these functions:

- ``new_workflow(bpmn, variables)`` starts a workflow on a definition's BPMN file and runs it up to its first
  user tasks; ``restore(bpmn, state)`` and ``dump(workflow)`` read and write ``Instance.state``: the
  serialized workflow *without* its spec (about 10 times smaller; the spec is parsed once per file per process
  and cached by the file's text).
- ``ready_user_tasks(workflow)`` lists the user tasks waiting for a person, sub-processes included;
  ``complete(workflow, engine_task_id, action, values)`` completes one of them with the person's decision
  and form values and runs the engine on to the next user tasks or the end.
- ``reset_to(workflow, engine_task_id)`` makes a completed user task ready again (recall).

Conditions on sequence flows and 会签 completion conditions are evaluated by
``portal.workflow.expressions`` (``ConditionEngine``), never by Python's ``eval``: the engine's default script
engine is replaced, and anything else it might be asked to run (scripts) is refused. A completion condition
sees the Camunda counters ``nrOfInstances``, ``nrOfCompletedInstances`` and ``nrOfActiveInstances``.

The multi-instance rule of 会签: every signer's task completes with their own decision; the node's ``action``
(what gateways after it read) is ``reject`` when any signer rejected, else ``approve``.
"""
import json
import re
import uuid
from functools import lru_cache

from SpiffWorkflow.bpmn.script_engine import PythonScriptEngine
from SpiffWorkflow.bpmn.serializer.workflow import BpmnWorkflowSerializer
from SpiffWorkflow.bpmn.specs.data_spec import TaskDataReference
from SpiffWorkflow.bpmn.specs.mixins.multiinstance_task import MultiInstanceTask
from SpiffWorkflow.bpmn.workflow import BpmnWorkflow
from SpiffWorkflow.camunda.serializer import DEFAULT_CONFIG
from SpiffWorkflow.util.task import TaskState

from portal.workflow import multi_instance
from portal.workflow.expressions import compile_condition

_VARIABLE = re.compile(r"\$\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}")
_SERIALIZER = BpmnWorkflowSerializer(BpmnWorkflowSerializer.configure(DEFAULT_CONFIG))
_REJECTED = "portal_rejected"  # a multi-instance task's internal flag: one of its signers rejected


class EngineRefused(Exception):
    """The engine was asked for something the portal never lets it do (a script)."""


class ConditionEngine(PythonScriptEngine):
    """SpiffWorkflow's script engine, reduced to the portal's condition language."""

    def evaluate(self, task, expression, external_context=None):
        variables = dict(task.data)
        variables.update(_completion_counters(task))
        if external_context:
            variables.update(external_context)
        return compile_condition(expression).evaluate(variables)

    def execute(self, task, script, external_context=None):
        raise EngineRefused("The portal runs no scripts.")


ENGINE = ConditionEngine()


def _multi_instance_parent(task):
    parent = task.parent
    if parent is not None and isinstance(parent.task_spec, MultiInstanceTask):
        return parent
    return None


def _completion_counters(task):
    """Camunda's counters for a task of a multi-instance node, else nothing."""
    parent = _multi_instance_parent(task)
    if parent is None:
        return {}
    spec = parent.task_spec
    collection = spec.data_input.get(parent) if spec.data_input is not None and spec.data_input.exists(parent) else []
    instances = list(spec._instances(parent))
    completed = len(parent.internal_data.get("merged", []))
    active = sum(1 for t in instances if not t.has_state(TaskState.FINISHED_MASK))
    return {"nrOfInstances": len(collection), "nrOfCompletedInstances": completed,
            "nrOfActiveInstances": active}


@lru_cache(maxsize=64)
def specs(bpmn):
    """(process spec, sub-process specs) of a BPMN file's text, parsed once per process and file."""
    from lxml import etree
    from SpiffWorkflow.camunda.parser import CamundaParser
    parser = CamundaParser()
    root = etree.fromstring(bpmn.encode("utf-8"), etree.XMLParser(resolve_entities=False, no_network=True))
    parser.add_bpmn_xml(root)
    key = parser.get_process_ids()[0]
    spec, subprocess_specs = parser.get_spec(key), parser.get_subprocess_specs(key)
    for each in [spec, *subprocess_specs.values()]:
        for task_spec in each.task_specs.values():
            if isinstance(task_spec, MultiInstanceTask) and task_spec.data_output is not None:
                _name_collection(task_spec)
                multi_instance.guard(task_spec)  # MAX_MULTI_INSTANCE, checked when the node is entered
    return spec, subprocess_specs


def _name_collection(task_spec):
    # Camunda writes camunda:collection="${signers}"; the engine needs the variable's name.
    written = task_spec.data_output.bpmn_id
    match = _VARIABLE.fullmatch(written.strip())
    if match:
        task_spec.data_output = TaskDataReference(match.group(1))


def new_workflow(bpmn, variables):
    """A workflow on ``bpmn`` whose start event holds ``variables``, run up to its first user tasks."""
    spec, subprocess_specs = specs(bpmn)
    workflow = BpmnWorkflow(spec, subprocess_specs, script_engine=ENGINE)
    for task in workflow.get_tasks(state=TaskState.READY):
        task.data.update(variables)
    workflow.do_engine_steps()
    return workflow


def dump(workflow):
    """The workflow's state as JSON text, without the spec (``restore`` takes it from the file)."""
    _SERIALIZER.registry._encoder_mode = True
    try:
        state = _SERIALIZER.to_dict(workflow)
    finally:
        _SERIALIZER.registry._encoder_mode = False
    del state["spec"], state["subprocess_specs"]
    state[_SERIALIZER.VERSION_KEY] = _SERIALIZER.VERSION
    return json.dumps(state, separators=(",", ":"), cls=_SERIALIZER._encoder_cls)


def restore(bpmn, state):
    """The workflow ``dump`` wrote, on the spec of ``bpmn``."""
    spec, subprocess_specs = specs(bpmn)
    data = json.loads(state)
    _SERIALIZER.migrate(data)
    data["spec"], data["subprocess_specs"] = spec, dict(subprocess_specs)
    workflow = _SERIALIZER.from_dict(data)
    workflow.script_engine = ENGINE
    return workflow


def ready_user_tasks(workflow):
    """User tasks waiting for a person, in the engine's order (sub-processes included)."""
    return workflow.get_tasks(state=TaskState.READY, manual=True)


def find_task(workflow, engine_task_id):
    try:
        return workflow.get_task_from_id(uuid.UUID(engine_task_id))
    except (KeyError, ValueError, TypeError):
        return None


def node_key(task):
    """The BPMN id of a user task (a multi-instance task's instances share their node's id)."""
    return task.task_spec.bpmn_id


def complete(workflow, engine_task_id, action, values):
    """Complete a ready user task with ``action`` and the form ``values``, then run the engine on."""
    task = find_task(workflow, engine_task_id)
    if task is None or task.state != TaskState.READY:
        raise LookupError(engine_task_id)
    task.data.update(values)
    task.data["action"] = action
    parent = _multi_instance_parent(task)
    if parent is not None:
        if action == "reject":
            parent.internal_data[_REJECTED] = True
        parent.data["action"] = "reject" if parent.internal_data.get(_REJECTED) else "approve"
    task.run()
    workflow.do_engine_steps()


def end(workflow):
    """Cancel every open task: the instance ends here (a reject the diagram does not route)."""
    workflow.cancel()


def reset_to(workflow, engine_task_id):
    """Make a completed user task ready again, dropping what followed it (recall)."""
    workflow.reset_from_task_id(uuid.UUID(engine_task_id))
    workflow.do_engine_steps()


def variables_of(task):
    return task.data
