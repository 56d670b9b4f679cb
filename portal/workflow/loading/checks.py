"""Which BPMN elements and structures the portal refuses, and why: the walk over one file's elements.

``Reader().read(root)`` checks the definitions element, its one executable process, a pool around it, and every
element of the process and of its embedded sub-processes: the accepted kinds (``ACCEPTED_FLOW_ELEMENTS``), the
refused ones with the reason given (``REFUSED_ELEMENTS``), extensions, event definitions, start and end events,
sequence flows and their conditions (read only on flows leaving an exclusive or inclusive gateway, each checked
with ``portal.workflow.expressions.compile_condition``), and that every element is reached from the start
event. User tasks are read by ``portal.workflow.loading.user_tasks``. Every problem is kept in ``Reader.problems``:
one message per refused element, keyed by its id, or ``"file"`` for the file as a whole; what a file that loads
says but the portal leaves out (a user task's formKey) is kept in ``Reader.warnings``.
"""
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l

from portal.workflow.expressions import ExpressionRefused, compile_condition
from portal.workflow.loading.elements import (BPMN, BPMNDI, CAMUNDA, MAX_KEY, MAX_NAME, camunda_attribute, describe,
                                              display_name, is_element, local_name, qualified, split_tag)
from portal.workflow.loading.user_tasks import BARE_VARIABLE_RE, read_user_task

GATEWAYS = {"exclusiveGateway", "inclusiveGateway", "parallelGateway"}
CONDITIONAL_GATEWAYS = {"exclusiveGateway", "inclusiveGateway"}
ACCEPTED_FLOW_ELEMENTS = {"startEvent", "endEvent", "userTask", "subProcess", "sequenceFlow"} | GATEWAYS
# Read as documentation only: they change nothing when a process runs.
IGNORED_ELEMENTS = {"documentation", "laneSet", "textAnnotation", "association", "group"}
REFUSED_ELEMENTS = {
    "scriptTask": _l("script tasks are not run by the portal"),
    "serviceTask": _l("service tasks are not run by the portal"),
    "sendTask": _l("send tasks are not run by the portal"),
    "receiveTask": _l("receive tasks are not run by the portal"),
    "businessRuleTask": _l("business rule tasks are not run by the portal"),
    "manualTask": _l("manual tasks are not run by the portal; draw the step as a user task"),
    "task": _l("a task without a type does nothing in the portal; draw the step as a user task"),
    "callActivity": _l("call activities are not supported; draw the steps here or in an embedded sub-process"),
    "transaction": _l("transactions are not supported"),
    "adHocSubProcess": _l("ad-hoc sub-processes are not supported"),
    "intermediateCatchEvent": _l("intermediate events are not supported"),
    "intermediateThrowEvent": _l("intermediate events are not supported"),
    "boundaryEvent": _l("boundary events are not supported"),
    "eventBasedGateway": _l("event-based gateways are not supported"),
    "complexGateway": _l("complex gateways are not supported"),
    "dataObject": _l("data objects are not read; a process's data are its instance variables"),
    "dataObjectReference": _l("data objects are not read; a process's data are its instance variables"),
    "dataStoreReference": _l("data stores are not supported"),
}
# External and linked forms cannot be shown by the portal; it draws generated forms (camunda:formData).
# A user task's formKey other than a Camunda Form is only a hint for another front end: it loads with a
# warning (``user_tasks``); on a start event, and as camunda:formRef, these stay refused.
REFUSED_CAMUNDA_ATTRIBUTES = ("formKey", "formRef")


class Reader:
    """One file's checks: the problems found so far and what was extracted."""

    def __init__(self):
        self.problems = {}
        self.conditions = {}  # flow id -> text
        self.compiled = {}  # flow id -> Condition
        self.flow_nodes = {}  # id -> element, every scope
        self.outgoing = {}  # id -> [sequence flow elements]
        self.starts = {}  # scope id -> start event
        self.nodes = {}  # user task id -> node dict
        self.completion = {}  # user task id -> Condition
        self.initiator = None
        self.refused = set()  # ids of refused flow nodes: their flows are not judged again
        self.warnings = []  # what the file says that the portal leaves out, in reading order

    def refuse(self, el, message):
        key = el.get("id") if el is not None and el.get("id") else "file"
        text = str(message)
        self.problems[key] = f"{self.problems[key]} {text}" if key in self.problems else text

    def refuse_element(self, el, reason):
        self.refuse(el, _("%(element)s: %(reason)s.", element=describe(el), reason=reason))

    def compile(self, el, text):
        try:
            return compile_condition(text)
        except ExpressionRefused as exc:
            # The message quotes the expression (shortened) and says what is not allowed.
            self.refuse(el, _("%(element)s: the condition is refused: %(reason)s",
                              element=describe(el), reason=exc.message))
            return None

    # -- the file --------------------------------------------------------------------------------------

    def read(self, root):
        if not is_element(root, BPMN, "definitions"):
            self.refuse(None, _("This is not a BPMN 2.0 file (its root element is %(tag)s).",
                                tag=qualified(root.tag)))
            return None
        processes = [el for el in root if is_element(el, BPMN, "process")]
        if len(processes) != 1:
            self.refuse(None, _("A file holds exactly one process; this one holds %(n)s.", n=len(processes)))
            return None
        process = processes[0]
        if process.get("isExecutable") != "true":
            self.refuse(process, _("%(element)s is not executable (tick \"Executable\" in Camunda Modeler).",
                                   element=describe(process)))
        for el in root:
            namespace, local = split_tag(el.tag)
            if namespace is None or el is process or (namespace == BPMNDI and local == "BPMNDiagram"):
                continue
            if namespace == BPMN and local == "collaboration":
                self.collaboration(el, process)
            elif namespace == BPMN and local in ("documentation", "extensionElements", "message", "signal",
                                                  "error", "escalation", "itemDefinition", "category"):
                continue  # definitions only; the events that would use them are refused
            else:
                self.refuse_element(el, _("this element is not supported by the portal"))
        key = process.get("id") or ""
        if len(key) > MAX_KEY:
            self.refuse(process, _("%(element)s: the process id is longer than %(n)s characters.",
                                   element=describe(process), n=MAX_KEY))
        name = display_name(process)
        if len(name) > MAX_NAME:
            self.refuse(process, _("%(element)s: the process name is longer than %(n)s characters.",
                                   element=describe(process), n=MAX_NAME))
        self.extensions(process, {"properties"})
        self.scope(process, top=True)
        return process

    def collaboration(self, el, process):
        for child in el:
            namespace, local = split_tag(child.tag)
            if namespace is None or (namespace == BPMN and local in ("documentation", "extensionElements")):
                continue
            if namespace == BPMN and local == "participant":
                if child.get("processRef") != process.get("id"):
                    self.refuse_element(child, _("a pool must hold this file's process"))
            elif namespace == BPMN and local == "messageFlow":
                self.refuse_element(child, _("message flows are not supported"))
            else:
                self.refuse_element(child, _("this element is not supported by the portal"))

    def extensions(self, el, allowed):
        container = [c for c in el if is_element(c, BPMN, "extensionElements")]
        for ext in container:
            for child in ext:
                namespace, local = split_tag(child.tag)
                if namespace is None or (namespace == CAMUNDA and local in allowed):
                    continue
                self.refuse(el, _("%(element)s: the extension %(extension)s is not supported.",
                                  element=describe(el), extension=qualified(child.tag)))
        return [child for ext in container for child in ext]

    def children(self, el, allowed):
        """Refuse child elements a flow node may not have (event definitions, loops, data associations)."""
        for child in el:
            namespace, local = split_tag(child.tag)
            if namespace is None or (namespace == BPMN and local in allowed | {
                    "documentation", "extensionElements", "incoming", "outgoing"}):
                continue
            if namespace == BPMN and local.endswith("EventDefinition"):
                self.refuse(el, _("%(element)s: %(kind)s events are not supported.",
                                  element=describe(el), kind=local[:-len("EventDefinition")]))
            else:
                self.refuse(el, _("%(element)s: %(child)s is not supported.",
                                  element=describe(el), child=qualified(child.tag)))

    # -- a process or an embedded sub-process ----------------------------------------------------------

    def scope(self, scope, top=False):
        elements, flows, starts, ends = {}, [], [], []
        # A sub-process's own flows and extensions sit among its children; the top process has none.
        skip = IGNORED_ELEMENTS | {"extensionElements"} | (set() if top else {"incoming", "outgoing"})
        for el in scope:
            namespace, local = split_tag(el.tag)
            if namespace is None or (namespace == BPMN and local in skip):
                continue
            if not top and namespace == BPMN and local.endswith("LoopCharacteristics"):
                self.refuse(scope, _("%(element)s: loops and multi-instance are read on user tasks only.",
                                     element=describe(scope)))
                continue
            if not top and namespace == BPMN and local.endswith("EventDefinition"):
                self.refuse(scope, _("%(element)s: %(kind)s events are not supported.",
                                     element=describe(scope), kind=local[:-len("EventDefinition")]))
                continue
            if namespace != BPMN:
                self.refuse(scope, _("%(element)s: the element %(child)s is not supported.",
                                     element=describe(scope), child=qualified(el.tag)))
                continue
            if local == "sequenceFlow":
                flows.append(el)
                continue
            if local in REFUSED_ELEMENTS or local not in ACCEPTED_FLOW_ELEMENTS:
                self.refuse_element(el, REFUSED_ELEMENTS.get(local) or _("this element is not supported by "
                                                                           "the portal"))
                if el.get("id"):
                    self.refused.add(el.get("id"))
                    elements[el.get("id")] = el  # its flows stay valid: one message for one mistake
                continue
            if not el.get("id"):
                self.refuse(None, _("A %(kind)s has no id.", kind=local))
                continue
            elements[el.get("id")] = el
            self.flow_nodes[el.get("id")] = el
            for attribute in REFUSED_CAMUNDA_ATTRIBUTES:
                if local == "userTask" and attribute == "formKey":
                    continue  # read with the task's form (user_tasks)
                if camunda_attribute(el, attribute) is not None:
                    self.refuse(el, _("%(element)s: camunda:%(attribute)s is not supported; use a generated "
                                      "task form (form fields).", element=describe(el), attribute=attribute))
            if local == "startEvent":
                starts.append(el)
                self.children(el, set())
                self.extensions(el, {"properties"})
                if top and camunda_attribute(el, "initiator"):
                    self.initiator = camunda_attribute(el, "initiator").strip()
                    if not BARE_VARIABLE_RE.fullmatch(self.initiator):
                        self.refuse(el, _("%(element)s: camunda:initiator must be a variable name.",
                                          element=describe(el)))
            elif local == "endEvent":
                ends.append(el)
                self.children(el, {"terminateEventDefinition"})
                self.extensions(el, {"properties"})
            elif local == "userTask":
                read_user_task(self, el)
            elif local == "subProcess":
                if el.get("triggeredByEvent") == "true":
                    self.refuse_element(el, _("event sub-processes are not supported"))
                    self.refused.add(el.get("id"))
                    continue
                self.extensions(el, {"properties"})
                self.scope(el)
            else:
                self.children(el, set())
                self.extensions(el, {"properties"})
        self.flows(scope, elements, flows)
        if not starts:
            self.refuse(scope, _("%(element)s has no start event.", element=describe(scope)))
        for extra in starts[1:]:
            self.refuse(extra, _("%(element)s: only one start event is allowed here.", element=describe(extra)))
        if not ends:
            self.refuse(scope, _("%(element)s has no end event.", element=describe(scope)))
        if starts:
            self.starts[scope.get("id")] = starts[0]
            self.reachable(starts[0], elements)

    def flows(self, scope, elements, flows):
        incoming = {}
        for flow in flows:
            self.children(flow, {"conditionExpression"})
            self.extensions(flow, {"properties"})
            source, target = elements.get(flow.get("sourceRef")), elements.get(flow.get("targetRef"))
            if source is None or target is None or not flow.get("id"):
                self.refuse(flow, _("%(element)s must join two elements of %(scope)s.",
                                    element=describe(flow), scope=describe(scope)))
                continue
            self.outgoing.setdefault(source.get("id"), []).append(flow)
            incoming.setdefault(target.get("id"), []).append(flow)
        for ident, el in elements.items():
            if ident in self.refused:
                continue
            local = local_name(el)
            out = self.outgoing.get(ident, [])
            if local == "endEvent" and out:
                self.refuse(el, _("%(element)s: an end event has no outgoing flow.", element=describe(el)))
            elif local != "endEvent" and not out:
                self.refuse(el, _("%(element)s has no outgoing sequence flow; end the path with an end event.",
                                  element=describe(el)))
            if local == "startEvent" and incoming.get(ident):
                self.refuse(el, _("%(element)s: a start event has no incoming flow.", element=describe(el)))
            default = el.get("default")
            if default and (local not in CONDITIONAL_GATEWAYS or default not in {f.get("id") for f in out}):
                self.refuse(el, _("%(element)s: the default flow must be one of an exclusive or inclusive "
                                  "gateway's outgoing flows.", element=describe(el)))
            for flow in out:
                self.condition(flow, el, default, len(out))

    def condition(self, flow, source, default, siblings):
        expression = next((c for c in flow if is_element(c, BPMN, "conditionExpression")), None)
        if expression is None:
            if local_name(source) in CONDITIONAL_GATEWAYS and siblings > 1 and flow.get("id") != default:
                self.refuse(flow, _("%(element)s leaves %(gateway)s with no condition; give it one or make "
                                    "it the default flow.", element=describe(flow), gateway=describe(source)))
            return
        text = (expression.text or "").strip()
        if expression.get("language"):
            self.refuse(flow, _("%(element)s: script conditions are not supported; write an expression.",
                                element=describe(flow)))
        elif local_name(source) not in CONDITIONAL_GATEWAYS:
            self.refuse(flow, _("%(element)s: conditions are read only on flows leaving an exclusive or "
                                "inclusive gateway.", element=describe(flow)))
        elif flow.get("id") == default:
            self.refuse(flow, _("%(element)s: the default flow has no condition.", element=describe(flow)))
        elif not text:
            self.refuse(flow, _("%(element)s: the condition is empty.", element=describe(flow)))
        else:
            self.conditions[flow.get("id")] = text
            compiled = self.compile(flow, text)
            if compiled is not None:
                self.compiled[flow.get("id")] = compiled

    def reachable(self, start, elements):
        seen, todo = {start.get("id")}, [start.get("id")]
        while todo:
            for flow in self.outgoing.get(todo.pop(), []):
                target = flow.get("targetRef")
                if target in elements and target not in seen:
                    seen.add(target)
                    todo.append(target)
        for ident, el in elements.items():
            if ident not in seen and ident not in self.refused:
                self.refuse(el, _("%(element)s cannot be reached from the start event.", element=describe(el)))
