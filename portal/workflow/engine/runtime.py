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
- ``resume(workflow)`` runs the engine on from a stored state that an earlier defect left short (repair of
  an instance that waits for nothing, ``portal.workflow.engine.repair``).

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
from SpiffWorkflow.bpmn.specs.mixins.multiinstance_task import LoopTask, MultiInstanceTask
from SpiffWorkflow.bpmn.workflow import BpmnWorkflow
from SpiffWorkflow.camunda.serializer import DEFAULT_CONFIG
from SpiffWorkflow.util.task import TaskState

from portal.workflow.engine import multi_instance
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
        for task_spec in list(each.task_specs.values()):
            if isinstance(task_spec, LoopTask):
                _settle_loop(each, task_spec)
    return spec, subprocess_specs


def _settle_loop(process_spec, task_spec):
    """Finish a loop task's spec (a 会签) now, as SpiffWorkflow finishes it only when the task runs.

    SpiffWorkflow completes these specs lazily, in the process that runs the task: a multi-instance task
    connects its instances' completion to its ``merge_child`` when it creates them, and the Camunda task
    sets its input collection from ``camunda:collection`` when it starts. A spec parsed here serves every
    instance of the file in this process, also those whose countersign was started in another process
    (another worker, a web process, before a restart). On an unfinished spec a signer's task completed but
    the countersign never learnt it: the instance waited for nothing, for good, or a sequential one let the
    first signer decide alone. (SpiffWorkflow's own spec deserializer makes the same connection.)
    """
    if isinstance(task_spec, MultiInstanceTask) and task_spec.data_output is not None:
        _name_collection(task_spec)
        multi_instance.guard(task_spec)  # MAX_MULTI_INSTANCE, checked when the node is entered
        if task_spec.cardinality is None:  # what camunda's update_task_spec sets, in the same way
            task_spec.data_input = TaskDataReference(task_spec.data_output.bpmn_id)
            if task_spec.output_item is not None:
                task_spec.input_item = TaskDataReference(task_spec.output_item.bpmn_id)
    child = process_spec.task_specs[task_spec.task_spec]
    if not child.completed_event.is_connected(task_spec.merge_child):
        child.completed_event.connect(task_spec.merge_child)


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


def resume(workflow):
    """Run the engine on from a restored state, catching up what the process that stored it missed.

    A 会签 whose signers' tasks completed without their completion reaching the multi-instance task (see
    ``_settle_loop``) waits for nothing. Each such signer's task is merged now, in the order they decided,
    as the engine would have merged it then (a sequential countersign asks its next signer; a completion
    condition is evaluated), and the engine runs on to its next user tasks or its end. Returns how many
    signers' tasks were merged.
    """
    merged = 0
    for parent in workflow.get_tasks(state=TaskState.STARTED):
        spec = parent.task_spec
        if not isinstance(spec, LoopTask):
            continue
        known = set(parent.internal_data.get("merged", []))
        missed = sorted((child for child in spec._instances(parent)
                         if child.state == TaskState.COMPLETED and str(child.id) not in known),
                        key=lambda child: child.last_state_change)
        for child in missed:
            if parent.state != TaskState.STARTED:  # a completion condition held: the rest are cancelled
                break
            spec.merge_child(child.workflow, child)
            merged += 1
    workflow.do_engine_steps()
    return merged


def variables_of(task):
    return task.data
