"""Small BPMN files for tests: ``process_xml(key, body)`` wraps flow elements in a Camunda 7 definitions file,
and ``flow``/``user_task``/``gateway`` write the elements people draw most, so that a test shows its process in
a few lines. The files carry no diagram (the loader does not need one). ``countersign_review`` reads the
review-and-countersign file of tests/bpmn_files in its variants."""
import os
from xml.sax.saxutils import escape, quoteattr

HEADER = ('<?xml version="1.0" encoding="UTF-8"?>\n'
          '<bpmn:definitions xmlns:bpmn="http://www.omg.org/spec/BPMN/20100524/MODEL" '
          'xmlns:camunda="http://camunda.org/schema/1.0/bpmn" '
          'xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" id="Definitions_1" '
          'targetNamespace="http://bpmn.io/schema/bpmn">\n')


def process_xml(key, body, name=None, initiator=None):
    start_attributes = f' camunda:initiator="{initiator}"' if initiator else ""
    return (HEADER + f'<bpmn:process id="{key}" name={quoteattr(name or key)} isExecutable="true">\n'
            f'<bpmn:startEvent id="start"{start_attributes}/>\n{body}\n</bpmn:process>\n</bpmn:definitions>\n'
            ).encode("utf-8")


def flow(ident, source, target, condition=None):
    if condition is None:
        return f'<bpmn:sequenceFlow id="{ident}" sourceRef="{source}" targetRef="{target}"/>\n'
    return (f'<bpmn:sequenceFlow id="{ident}" sourceRef="{source}" targetRef="{target}">'
            f'<bpmn:conditionExpression xsi:type="bpmn:tFormalExpression">{escape(condition)}'
            f'</bpmn:conditionExpression></bpmn:sequenceFlow>\n')


def user_task(ident, assignee=None, *, groups=None, users=None, fields="", multi=None):
    attributes = f' name="{ident.title()}"'
    if assignee:
        attributes += f' camunda:assignee="{assignee}"'
    if groups:
        attributes += f' camunda:candidateGroups="{groups}"'
    if users:
        attributes += f' camunda:candidateUsers="{users}"'
    inner = ""
    if fields:
        inner += f"<bpmn:extensionElements><camunda:formData>{fields}</camunda:formData></bpmn:extensionElements>"
    if multi:
        inner += multi
    return f'<bpmn:userTask id="{ident}"{attributes}>{inner}</bpmn:userTask>\n'


def multi_instance(collection, element, *, sequential=False, completion=None):
    condition = (f'<bpmn:completionCondition xsi:type="bpmn:tFormalExpression">{escape(completion)}'
                 f'</bpmn:completionCondition>') if completion else ""
    sequential_attribute = ' isSequential="true"' if sequential else ""
    return (f'<bpmn:multiInstanceLoopCharacteristics camunda:collection="{collection}" '
            f'camunda:elementVariable="{element}"{sequential_attribute}>'
            f'{condition}</bpmn:multiInstanceLoopCharacteristics>')


def gateway(kind, ident, default=None):
    default_attribute = f' default="{default}"' if default else ""
    return f'<bpmn:{kind} id="{ident}"{default_attribute}/>\n'


def end(ident, terminate=False):
    if terminate:
        return (f'<bpmn:endEvent id="{ident}"><bpmn:terminateEventDefinition id="{ident}_terminate"/>'
                f'</bpmn:endEvent>\n')
    return f'<bpmn:endEvent id="{ident}"/>\n'


def number_field(key, required=False):
    constraint = '<camunda:validation><camunda:constraint name="required"/></camunda:validation>' if required else ""
    return f'<camunda:formField id="{key}" label="{key.title()}" type="long">{constraint}</camunda:formField>'


# tests/bpmn_files/countersign_review.bpmn (a review ending in a parallel 会签) and its variants.
COUNTERSIGN_REVIEW = os.path.join(os.path.dirname(os.path.abspath(__file__)), "bpmn_files",
                                  "countersign_review.bpmn")
INTO_END = '<bpmn:sequenceFlow id="f_signed" sourceRef="countersign" targetRef="done" />'
# The countersign's outcome read by a gateway: a reject by any signer ends the claim as rejected.
INTO_GATEWAY = (
    '<bpmn:exclusiveGateway id="signed" default="f_agreed" />'
    '<bpmn:endEvent id="refused"><bpmn:terminateEventDefinition id="refused_terminate" /></bpmn:endEvent>'
    '<bpmn:sequenceFlow id="f_signed" sourceRef="countersign" targetRef="signed" />'
    '<bpmn:sequenceFlow id="f_agreed" sourceRef="signed" targetRef="done" />'
    '<bpmn:sequenceFlow id="f_refused" sourceRef="signed" targetRef="refused">'
    '<bpmn:conditionExpression xsi:type="bpmn:tFormalExpression">${action == \'reject\'}'
    '</bpmn:conditionExpression></bpmn:sequenceFlow>')
LOOP = '<bpmn:multiInstanceLoopCharacteristics '


def countersign_review(sequential=False, after="end"):
    """The file's process, its countersign parallel or sequential, followed by the end event or a gateway."""
    with open(COUNTERSIGN_REVIEW, encoding="utf-8") as fh:
        text = fh.read()
    assert text.count(LOOP) == 1 and text.count(INTO_END) == 1
    if sequential:
        text = text.replace(LOOP, LOOP + 'isSequential="true" ')
    if after == "gateway":
        text = text.replace(INTO_END, INTO_GATEWAY)
    return text.encode("utf-8")
