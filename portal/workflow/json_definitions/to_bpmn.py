"""The BPMN 2.0 file (Camunda 7 attributes, with a diagram) equivalent to a JSON process definition.

``bpmn_from_json(definition) -> str`` draws the JSON file's meaning (contract section 5) as a process Camunda
Modeler 5 opens: start event -> each node as a user task, in order -> after each task an exclusive gateway whose
flow ``${action == 'reject'}`` leads to a terminate end event "Rejected" and whose default flow leads on to the
next task; after the last task's gateway, an end event "Approved". Node assignees become ``camunda:assignee``
(``user:NAME``) or ``camunda:candidateGroups`` (``role:NAME``); fields become ``camunda:formData`` as
``portal.workflow.loading`` reads them back (numbers as ``double``, selects as ``enum`` with id = name, tables as
strings with the ``portal:type`` / ``portal:columns`` properties), so ``load_bpmn`` of the result gives the JSON
file's nodes again.
"""
import json
import re

from flask_babel import gettext as _
from lxml import etree

from portal.errors import ValidationFailed
from portal.workflow.json_definitions.checks import check_definition
from portal.workflow.loading.elements import BPMN, BPMNDI, CAMUNDA

DC = "http://www.omg.org/spec/DD/20100524/DC"
DI = "http://www.omg.org/spec/DD/20100524/DI"
MODELER = "http://camunda.org/schema/modeler/1.0"
NSMAP = {"bpmn": BPMN, "bpmndi": BPMNDI, "dc": DC, "di": DI, "camunda": CAMUNDA, "modeler": MODELER}
# XML ids (xsd:ID) are NCNames: a node key becomes a user task's id, so it must be one.
NCNAME_RE = re.compile(r"[^\W\d][\w.-]*")
TYPE_NAMES = {"text": "string", "number": "double", "boolean": "boolean", "date": "date", "select": "enum",
              "table": "string"}

# The drawing: one row, each node a task and its gateway, rejections below their gateway.
ROW_Y = 120  # centre line of the row
TASK_W, TASK_H, GATEWAY, EVENT = 100, 80, 50, 36
STEP = 250  # from one task to the next
FIRST_TASK_X = 240


def _el(parent, namespace, tag, **attributes):
    element = etree.SubElement(parent, f"{{{namespace}}}{tag}")
    for name, value in attributes.items():
        if value is not None:
            element.set(name, str(value))
    return element


def _camunda(name):
    return f"{{{CAMUNDA}}}{name}"


def _number_text(value):
    return str(int(value)) if float(value).is_integer() else repr(float(value))


def _form(task, fields):
    if not fields:
        return
    extensions = _el(task, BPMN, "extensionElements")
    form = _el(extensions, CAMUNDA, "formData")
    for spec in fields:
        xml_field = _el(form, CAMUNDA, "formField", id=spec["key"], label=spec.get("label"),
                        type=TYPE_NAMES[spec.get("type", "text")])
        if spec.get("type") == "table":
            properties = _el(xml_field, CAMUNDA, "properties")
            _el(properties, CAMUNDA, "property", id="portal:type", value="table")
            _el(properties, CAMUNDA, "property", id="portal:columns",
                value=json.dumps(spec.get("columns", []), ensure_ascii=False, separators=(",", ":")))
        constraints = []
        if spec.get("required"):
            constraints.append(("required", None))
        if spec.get("readonly"):
            constraints.append(("readonly", None))
        for key, name in (("min", "min"), ("max", "max")):
            if spec.get(key) is not None:
                constraints.append((name, _number_text(spec[key])))
        for key, name in (("min_length", "minlength"), ("max_length", "maxlength")):
            if spec.get(key) is not None:
                constraints.append((name, str(int(spec[key]))))
        if constraints:
            validation = _el(xml_field, CAMUNDA, "validation")
            for name, config in constraints:
                _el(validation, CAMUNDA, "constraint", name=name, config=config)
        for option in spec.get("options", []) if spec.get("type") == "select" else []:
            _el(xml_field, CAMUNDA, "value", id=str(option), name=str(option))


class _Ids:
    """Ids for the generated elements that no node key already uses."""

    def __init__(self, taken):
        self.taken = set(taken)

    def __call__(self, wanted):
        candidate, n = wanted, 1
        while candidate in self.taken:
            n += 1
            candidate = f"{wanted}_{n}"
        self.taken.add(candidate)
        return candidate


class _Drawing:
    """Shapes and edges of the diagram, added as elements are made."""

    def __init__(self, plane):
        self.plane = plane
        self.bounds = {}

    def shape(self, element_id, x, y, width, height, **attributes):
        shape = _el(self.plane, BPMNDI, "BPMNShape", id=f"{element_id}_di", bpmnElement=element_id,
                    **attributes)
        _el(shape, DC, "Bounds", x=x, y=y, width=width, height=height)
        self.bounds[element_id] = (x, y, width, height)

    def edge(self, flow_id, source, target):
        sx, sy, sw, sh = self.bounds[source]
        tx, ty, tw, th = self.bounds[target]
        edge = _el(self.plane, BPMNDI, "BPMNEdge", id=f"{flow_id}_di", bpmnElement=flow_id)
        if ty > sy + sh:  # straight down, from the gateway to its "Rejected" end event
            points = [(sx + sw // 2, sy + sh), (tx + tw // 2, ty)]
        else:
            points = [(sx + sw, sy + sh // 2), (tx, ty + th // 2)]
        for x, y in points:
            _el(edge, DI, "waypoint", x=x, y=y)


def bpmn_from_json(definition):
    """The BPMN XML text of a JSON definition; raises ValidationFailed for a definition it cannot draw."""
    problems = check_definition(definition)
    if not problems:
        for i, node in enumerate(definition["nodes"]):
            if not NCNAME_RE.fullmatch(node["key"]):
                problems[f"nodes[{i}].key"] = _("A node key must start with a letter and hold only letters, "
                                                "digits, dot, dash or underscore to be a BPMN id.")
        if not NCNAME_RE.fullmatch(definition["key"]):
            problems["key"] = _("The key must start with a letter and hold only letters, digits, dot, dash "
                                "or underscore to be a BPMN id.")
    if problems:
        raise ValidationFailed(problems, message=_("The process definition is invalid."))

    key = definition["key"]
    new_id = _Ids([key] + [node["key"] for node in definition["nodes"]])
    root = etree.Element(f"{{{BPMN}}}definitions", nsmap=NSMAP)
    root.set("id", new_id("Definitions_1"))
    root.set("targetNamespace", "http://bpmn.io/schema/bpmn")
    root.set("exporter", "batch approval portal")
    root.set("exporterVersion", "1")
    root.set(f"{{{MODELER}}}executionPlatform", "Camunda Platform")
    root.set(f"{{{MODELER}}}executionPlatformVersion", "7.21.0")
    process = _el(root, BPMN, "process", id=key, name=definition["name"], isExecutable="true")
    diagram = _el(root, BPMNDI, "BPMNDiagram", id=new_id("BPMNDiagram_1"))
    drawing = _Drawing(_el(diagram, BPMNDI, "BPMNPlane", id=new_id("BPMNPlane_1"), bpmnElement=key))

    flows = []  # (id, source, target, condition), written after the flow nodes

    def connect(source, target, condition=None):
        flow_id = new_id(f"Flow_{source}_{target}")
        flows.append((flow_id, source, target, condition))
        return flow_id

    start = new_id("StartEvent_1")
    _el(process, BPMN, "startEvent", id=start, name="Start")
    drawing.shape(start, FIRST_TASK_X - 90, ROW_Y - EVENT // 2, EVENT, EVENT)
    gateways = set()
    previous = start
    for i, node in enumerate(definition["nodes"]):
        task_x = FIRST_TASK_X + i * STEP
        kind, _sep, name = node["assignee"].partition(":")
        attributes = {_camunda("assignee"): name} if kind == "user" else {_camunda("candidateGroups"): name}
        task = _el(process, BPMN, "userTask", id=node["key"], name=node.get("name") or node["key"], **attributes)
        _form(task, node.get("fields", []))
        drawing.shape(node["key"], task_x, ROW_Y - TASK_H // 2, TASK_W, TASK_H)
        connect(previous, node["key"])
        gateway = new_id(f"Gateway_{node['key']}")
        rejected = new_id(f"Rejected_{node['key']}")
        _el(process, BPMN, "exclusiveGateway", id=gateway, name="Rejected?")
        gateway_x = task_x + TASK_W + 50
        drawing.shape(gateway, gateway_x, ROW_Y - GATEWAY // 2, GATEWAY, GATEWAY, isMarkerVisible="true")
        end = _el(process, BPMN, "endEvent", id=rejected, name="Rejected")
        drawing.shape(rejected, gateway_x + (GATEWAY - EVENT) // 2, ROW_Y + 80, EVENT, EVENT)
        connect(node["key"], gateway)
        connect(gateway, rejected, "${action == 'reject'}")
        _el(end, BPMN, "terminateEventDefinition", id=new_id(f"TerminateEventDefinition_{node['key']}"))
        gateways.add(gateway)
        previous = gateway
    approved = new_id("EndEvent_approved")
    _el(process, BPMN, "endEvent", id=approved, name="Approved")
    drawing.shape(approved, FIRST_TASK_X + len(definition["nodes"]) * STEP, ROW_Y - EVENT // 2, EVENT, EVENT)
    connect(previous, approved)

    # Each gateway's flow without a condition is its default: the approval goes on.
    defaults = {source: flow_id for flow_id, source, _t, condition in flows
                if condition is None and source in gateways}
    for flow_id, source, target, condition in flows:
        flow = _el(process, BPMN, "sequenceFlow", id=flow_id, sourceRef=source, targetRef=target)
        if condition is not None:
            expression = _el(flow, BPMN, "conditionExpression")
            expression.set("{http://www.w3.org/2001/XMLSchema-instance}type", "bpmn:tFormalExpression")
            expression.text = condition
        drawing.edge(flow_id, source, target)
    # incoming/outgoing and default refer to the flows; BPMN wants them after extensionElements, before the rest.
    by_id = {el.get("id"): el for el in process}
    for element_id, element in by_id.items():
        references = [("incoming", f[0]) for f in flows if f[2] == element_id]
        references += [("outgoing", f[0]) for f in flows if f[1] == element_id]
        position = 1 if len(element) and element[0].tag == f"{{{BPMN}}}extensionElements" else 0
        for offset, (kind, flow_id) in enumerate(references):
            reference = etree.Element(f"{{{BPMN}}}{kind}")
            reference.text = flow_id
            element.insert(position + offset, reference)
    for gateway, flow_id in defaults.items():
        by_id[gateway].set("default", flow_id)
    # Shapes before edges, in the order Camunda Modeler writes them.
    plane = drawing.plane
    plane[:] = sorted(plane, key=lambda el: el.tag != f"{{{BPMNDI}}}BPMNShape")
    return etree.tostring(root, xml_declaration=True, encoding="UTF-8", pretty_print=True).decode("utf-8")

