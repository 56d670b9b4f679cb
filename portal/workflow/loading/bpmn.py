"""Loading BPMN 2.0 process files as Camunda Modeler 5 saves them for Camunda 7 (contract section 5b).

``load_bpmn(data) -> BpmnProcess`` reads one file and either refuses it with ``ValidationFailed`` (one message
per refused element, keyed by the element's id, or ``"file"`` for the file as a whole) or returns the process:
its key and name, its nodes (one per user task, in the JSON node format of section 5 plus what JSON cannot say),
the file's text, the conditions of its sequence flows, warnings about what it leaves out (a user task's formKey:
the task is decided with its form fields) and SpiffWorkflow's process spec.

Reading order: a size limit (``MAX_BPMN_BYTES``), then defusedxml with DTDs forbidden (a BPMN file never needs
one, and an entity bomb or an external entity needs one), then the portal's own checks over every element (so
the messages are the portal's and name the element), then lxml and SpiffWorkflow's Camunda parser over the same
bytes, with the BPMN 2.0 XML schema, which proves the engine accepts the file. ``docs/bpmn.md`` tells process
authors what is read.

The parts, each a module of ``portal.workflow.loading``: ``checks`` (which elements and structures are refused
and why: ``ACCEPTED_FLOW_ELEMENTS``, ``REFUSED_ELEMENTS``), ``user_tasks`` (a user task's node dict: assignee,
candidates, multi-instance), ``form_data`` (``camunda:formData`` -> field dicts, the table extension) and
``elements`` (namespaces and how messages name an element). Import their names from them.

Nodes come in the order a walk along the sequence flows from the start event meets them (embedded sub-processes
included). A node's ``tests_action`` is true when the task's completion condition, or a condition on a sequence
flow between the task and the next activities (through gateways), reads ``action``; a reject at a task where it
is false ends the instance as rejected (contract 5b).

Conditions (``BpmnProcess.conditions``: sequence flow id -> text as written) are read only on flows leaving an
exclusive or inclusive gateway.
"""
from collections import deque
from dataclasses import dataclass, field
from functools import lru_cache

from defusedxml import DefusedXmlException
from defusedxml.ElementTree import ParseError, fromstring
from flask_babel import gettext as _

from portal.errors import ValidationFailed
from portal.workflow.loading.checks import GATEWAYS, Reader
from portal.workflow.loading.elements import describe, display_name, local_name

MAX_BPMN_BYTES = 2 * 1024 * 1024
# Camunda Modeler files nest about ten elements deep; a much deeper file is an attack on the walkers.
MAX_DEPTH = 64
# SpiffWorkflow's parser recurses along the flows and overflows Python's stack near 730 elements in a row.
MAX_FLOW_NODES = 500


@dataclass
class BpmnProcess:
    key: str
    name: str
    nodes: list  # node dicts, see portal.workflow.loading.user_tasks
    xml: str
    conditions: dict  # sequence flow id -> condition text as written
    initiator: str | None = None  # the start event's camunda:initiator: variable set to the starter's name
    warnings: list = field(default_factory=list)  # what the portal leaves out (a user task's formKey)
    spec: object = field(default=None, repr=False, compare=False)  # SpiffWorkflow BpmnProcessSpec
    subprocess_specs: dict = field(default_factory=dict, repr=False, compare=False)


def _ordered_nodes(reader, process):
    """User tasks in the order a walk along the flows from the start event meets them."""
    order, seen, todo = [], set(), deque()
    start = reader.starts.get(process.get("id"))
    if start is not None:
        todo.append(start.get("id"))
        seen.add(start.get("id"))
    while todo:
        ident = todo.popleft()
        el = reader.flow_nodes.get(ident)
        if ident in reader.nodes:
            order.append(reader.nodes[ident])
        following = [f.get("targetRef") for f in reader.outgoing.get(ident, [])]
        if el is not None and local_name(el) == "subProcess" and ident in reader.starts:
            following.insert(0, reader.starts[ident].get("id"))
        for target in following:
            if target not in seen:
                seen.add(target)
                todo.append(target)
    placed = {node["key"] for node in order}
    order.extend(node for key, node in reader.nodes.items() if key not in placed)
    for node in order:
        node["tests_action"] = _tests_action(reader, node["key"])
    return order


def _tests_action(reader, key):
    completion = reader.completion.get(key)
    if completion is not None and completion.tests_action:
        return True
    seen, todo = set(), list(reader.outgoing.get(key, []))
    while todo:
        flow = todo.pop()
        if flow.get("id") in seen:
            continue
        seen.add(flow.get("id"))
        compiled = reader.compiled.get(flow.get("id"))
        if compiled is not None and compiled.tests_action:
            return True
        target = reader.flow_nodes.get(flow.get("targetRef"))
        if target is not None and local_name(target) in GATEWAYS:
            todo.extend(reader.outgoing.get(target.get("id"), []))
    return False


def _depth(root):
    deepest, todo = 0, [(root, 1)]
    while todo:
        el, depth = todo.pop()
        deepest = max(deepest, depth)
        if deepest > MAX_DEPTH:
            return deepest
        todo.extend((child, depth + 1) for child in el)
    return deepest


@lru_cache(maxsize=1)
def _schema_validator():
    # Reading the BPMN 2.0 XML schema takes a moment; it is the same for every file.
    from SpiffWorkflow.bpmn.parser.BpmnParser import BpmnValidator
    return BpmnValidator()


def _spiff_specs(data, key):
    """Have SpiffWorkflow's Camunda parser build the process; returns (spec, subprocess specs)."""
    from lxml import etree
    from SpiffWorkflow.camunda.parser import CamundaParser
    from SpiffWorkflow.exceptions import SpiffWorkflowException
    # The bytes passed defusedxml with DTDs forbidden; lxml still resolves nothing and fetches nothing.
    parser = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False, huge_tree=False)
    try:
        camunda = CamundaParser(validator=_schema_validator())
        camunda.add_bpmn_xml(etree.fromstring(data, parser))
        return camunda.get_spec(key), camunda.get_subprocess_specs(key)
    except SpiffWorkflowException as exc:
        where = getattr(exc, "id", "") or "file"
        line = getattr(exc, "line_number", "")
        detail = f"{exc} (line {line})" if line else str(exc)
    except Exception as exc:  # noqa: BLE001 - a third-party parser's odd error about a user's file is a 4xx
        where, detail = "file", f"{type(exc).__name__}: {exc}"
    raise ValidationFailed({where: _("The workflow engine refused the file: %(detail)s", detail=detail)},
                           message=_("The BPMN file is refused."))


def load_bpmn(data):
    """Check and read one BPMN file (bytes); raises ValidationFailed naming every refused element."""
    if isinstance(data, str):
        data = data.encode("utf-8")

    def refused(problems):
        return ValidationFailed(problems, message=_("The BPMN file is refused."))

    if len(data) > MAX_BPMN_BYTES:
        raise refused({"file": _("The file is larger than %(n)s MB.", n=MAX_BPMN_BYTES // (1024 * 1024))})
    try:
        root = fromstring(data, forbid_dtd=True, forbid_entities=True, forbid_external=True)
    except DefusedXmlException:
        raise refused({"file": _("The file declares a DTD or entities, which BPMN files never need.")}) from None
    except ParseError as exc:
        raise refused({"file": _("The file is not well-formed XML: %(detail)s", detail=str(exc))}) from None
    except ValueError:  # expat reads no multi-byte encoding but UTF-8 and UTF-16 (e.g. GBK)
        raise refused({"file": _("The file is not UTF-8 text.")}) from None
    try:
        text = data.decode("utf-8-sig")  # the portal keeps the file as text (Camunda Modeler writes UTF-8)
    except UnicodeDecodeError:
        raise refused({"file": _("The file is not UTF-8 text.")}) from None
    if _depth(root) > MAX_DEPTH:
        raise refused({"file": _("The file nests elements more than %(n)s deep.", n=MAX_DEPTH)})
    reader = Reader()
    process = reader.read(root)
    if len(reader.flow_nodes) > MAX_FLOW_NODES:
        raise refused({"file": _("The process has %(n)s events, tasks and gateways; at most %(max)s are "
                                 "allowed.", n=len(reader.flow_nodes), max=MAX_FLOW_NODES)})
    if process is not None and not reader.nodes and not reader.problems:
        reader.refuse(process, _("%(element)s has no user task.", element=describe(process)))
    if reader.problems:
        raise refused(reader.problems)
    nodes = _ordered_nodes(reader, process)
    key = process.get("id")
    spec, subprocess_specs = _spiff_specs(data, key)
    return BpmnProcess(key=key, name=display_name(process), nodes=nodes,
                       xml=text, conditions=dict(reader.conditions), initiator=reader.initiator,
                       warnings=list(reader.warnings), spec=spec, subprocess_specs=subprocess_specs)
