"""Loading BPMN process files (contract 5b): accepted constructs, refused elements and their messages, forms,
assignees, the example file, JSON -> BPMN -> nodes, and hostile files (not XML, entities, size, depth)."""
import copy
import os
import re

import pytest
from lxml import etree

from portal.demo import EXPENSE, LEAVE
from portal.errors import ValidationFailed
from portal.workflow.json_definitions.checks import check_definition
from portal.workflow.json_definitions.to_bpmn import bpmn_from_json
from portal.workflow.loading.bpmn import MAX_BPMN_BYTES, MAX_FLOW_NODES, load_bpmn

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FILES = os.path.join(ROOT, "tests", "bpmn_files")
HEAD = ('<?xml version="1.0" encoding="UTF-8"?>\n'
        '<bpmn:definitions xmlns:bpmn="http://www.omg.org/spec/BPMN/20100524/MODEL" '
        'xmlns:camunda="http://camunda.org/schema/1.0/bpmn" '
        'xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" id="d" targetNamespace="http://bpmn.io/schema/bpmn">')
TASK = '<bpmn:userTask id="review" name="Review" camunda:assignee="alice" />'


@pytest.fixture
def expressions():
    """Files with conditions need the portal's expression checker (portal/workflow/expressions/)."""
    return pytest.importorskip("portal.workflow.expressions")


def document(body, process='id="claim" name="Claim" isExecutable="true"', before="", after=""):
    return f'{HEAD}{before}<bpmn:process {process}>{body}</bpmn:process>{after}</bpmn:definitions>'.encode()


def chain(*elements, **kwargs):
    """A process start -> each element in turn -> end, joined by sequence flows."""
    ids = ["start"] + [re.search(r'id="([^"]+)"', el).group(1) for el in elements] + ["end"]
    flows = "".join(f'<bpmn:sequenceFlow id="f{i}" sourceRef="{a}" targetRef="{b}" />'
                    for i, (a, b) in enumerate(zip(ids, ids[1:])))
    body = '<bpmn:startEvent id="start" />' + "".join(elements) + '<bpmn:endEvent id="end" />' + flows
    return document(body, **kwargs)


def refusal(data):
    with pytest.raises(ValidationFailed) as caught:
        load_bpmn(data)
    assert caught.value.status == 422
    return caught.value.errors


def task_with(attributes="", inner=""):
    return f'<bpmn:userTask id="review" name="Review" {attributes}>{inner}</bpmn:userTask>'


def form(*fields):
    return ("<bpmn:extensionElements><camunda:formData>" + "".join(fields)
            + "</camunda:formData></bpmn:extensionElements>")


def fields_of(*xml_fields):
    return load_bpmn(chain(task_with('camunda:assignee="alice"', form(*xml_fields)))).nodes[0]["fields"]


def read(name):
    with open(os.path.join(FILES, name), "rb") as f:
        return f.read()


# -- accepted files ------------------------------------------------------------------------------------------

def test_minimal_process_gives_one_node_and_a_spiff_spec():
    process = load_bpmn(chain(TASK))
    assert (process.key, process.name) == ("claim", "Claim")
    assert process.nodes == [{"key": "review", "name": "Review", "assignee": "user:alice", "fields": [],
                              "candidate_users": [], "candidate_groups": [], "multi_instance": None,
                              "tests_action": False}]
    assert process.conditions == {} and process.initiator is None
    assert "review" in process.spec.task_specs
    assert process.xml.startswith('<?xml version="1.0"')


def test_example_expense_file(expressions):
    with open(os.path.join(ROOT, "examples", "expense.bpmn"), "rb") as f:
        process = load_bpmn(f.read())
    assert (process.key, process.name, process.initiator) == ("expense_claim", "Expense claim (BPMN)", "initiator")
    nodes = {n["key"]: n for n in process.nodes}
    assert [n["key"] for n in process.nodes] == ["manager_review", "revise_claim", "director_review",
                                                 "countersign", "finance_review"]
    assert {k: n["assignee"] for k, n in nodes.items()} == {
        "manager_review": "user:alice", "revise_claim": "var:initiator", "director_review": "role:directors",
        "countersign": "var:signer", "finance_review": "role:finance"}
    assert nodes["countersign"]["multi_instance"] == {
        "collection": "signers", "element_variable": "signer", "sequential": False,
        "completion_condition": "${nrOfCompletedInstances == nrOfInstances || action == 'reject'}"}
    assert process.conditions["Flow_large_amount"] == "${amount > 10000}"
    assert process.conditions["Flow_manager_rejected"] == "${action == 'reject'}"
    # finance's reject is tested by no condition: it ends the instance as rejected (contract 5b)
    assert {k: n["tests_action"] for k, n in nodes.items()} == {
        "manager_review": True, "revise_claim": True, "director_review": True, "countersign": True,
        "finance_review": False}
    manager = {f["key"]: f for f in nodes["manager_review"]["fields"]}
    assert manager["amount"] == {"key": "amount", "label": "Amount", "type": "number", "required": True,
                                 "min": 0, "max": 1000000}
    assert manager["category"]["options"] == ["Travel", "Meals", "Other"]
    assert manager["category"]["option_ids"] == ["travel", "meals", "other"]
    assert manager["lines"]["type"] == "table" and manager["lines"]["columns"][1]["min"] == 0
    assert nodes["revise_claim"]["fields"][0] == {"key": "answer", "label": "Answer to the reviewer",
                                                  "type": "text", "required": True, "min_length": 5,
                                                  "max_length": 500}
    assert {"manager_review", "countersign", "finance_review"} <= set(process.spec.task_specs)


def test_constructs_file_gateways_subprocess_candidates_sequential_multi_instance(expressions):
    process = load_bpmn(read("constructs.bpmn"))
    nodes = {n["key"]: n for n in process.nodes}
    assert [n["key"] for n in process.nodes] == ["legal", "it_check", "hr_note", "finance_note", "sign"]
    assert nodes["legal"]["assignee"] == "user:carol"  # one candidate user
    assert nodes["it_check"]["assignee"] == "candidates"  # inside the embedded sub-process
    assert nodes["it_check"]["candidate_users"] == ["bob", "carol"]
    assert nodes["it_check"]["candidate_groups"] == ["it"]
    assert nodes["hr_note"]["assignee"] == "role:hr"
    assert nodes["finance_note"]["assignee"] == "candidates"
    assert nodes["finance_note"]["candidate_groups"] == ["finance", "audit"]
    assert nodes["sign"]["multi_instance"] == {"collection": "signers", "element_variable": "signer",
                                               "sequential": True, "completion_condition": None}
    assert nodes["sign"]["tests_action"] and not nodes["legal"]["tests_action"]
    assert set(process.conditions) == {"f_hr", "f_finance", "f_refused"}
    assert "it_block" in process.subprocess_specs


@pytest.mark.parametrize("attributes, assignee, users, groups", [
    ('camunda:assignee="alice"', "user:alice", [], []),
    ('camunda:assignee="${starter}"', "var:starter", [], []),
    ('camunda:assignee="${ starter }"', "var:starter", [], []),
    ('camunda:candidateGroups="finance"', "role:finance", [], ["finance"]),
    ('camunda:candidateUsers="bob"', "user:bob", ["bob"], []),
    ('camunda:candidateUsers=" bob , carol,bob,"', "candidates", ["bob", "carol"], []),
    ('camunda:candidateGroups="finance,audit"', "candidates", [], ["finance", "audit"]),
    ('camunda:candidateUsers="bob" camunda:candidateGroups="finance"', "candidates", ["bob"], ["finance"]),
    ('camunda:assignee="alice" camunda:candidateGroups="finance"', "user:alice", [], ["finance"]),
    ('camunda:assignee="张伟"', "user:张伟", [], []),
])
def test_assignee_forms(attributes, assignee, users, groups):
    node = load_bpmn(chain(task_with(attributes))).nodes[0]
    assert (node["assignee"], node["candidate_users"], node["candidate_groups"]) == (assignee, users, groups)


@pytest.mark.parametrize("attributes, words", [
    ("", "has no assignee, candidate users or candidate groups"),
    ('camunda:assignee="  "', "has no assignee"),
    ('camunda:assignee="${manager.name}"', "is not a user name or ${variable}"),
    ('camunda:assignee="#{boss}"', "is not a user name or ${variable}"),
    ('camunda:assignee="al ice"', "is not a user name or ${variable}"),
    ('camunda:candidateUsers="${approvers}"', "in camunda:candidateUsers is not a name"),
    ('camunda:candidateGroups="finance, a b"', "a b in camunda:candidateGroups is not a name"),
])
def test_assignee_refusals_name_the_task(attributes, words):
    errors = refusal(chain(task_with(attributes)))
    assert list(errors) == ["review"]
    assert errors["review"].startswith('userTask "Review" (review)') and words in errors["review"]


def test_form_field_types_and_constraints():
    fields = fields_of(
        '<camunda:formField id="subject" label="Subject" type="string" defaultValue="x">'
        '<camunda:validation><camunda:constraint name="required" /><camunda:constraint name="readonly" />'
        '<camunda:constraint name="minlength" config="2" /><camunda:constraint name="maxlength" config="40" />'
        '</camunda:validation></camunda:formField>',
        '<camunda:formField id="count" type="long"><camunda:validation>'
        '<camunda:constraint name="min" config="1" /><camunda:constraint name="max" config="9" />'
        '</camunda:validation></camunda:formField>',
        '<camunda:formField id="rate" type="double"><camunda:validation>'
        '<camunda:constraint name="min" config="0.5" /></camunda:validation></camunda:formField>',
        '<camunda:formField id="ok" label="OK" type="boolean" />',
        '<camunda:formField id="on" label="On" type="date" />',
        '<camunda:formField id="pick" label="Pick" type="enum"><camunda:value id="a" name="Alpha" />'
        '<camunda:value id="b" name="Beta" /></camunda:formField>',
        '<camunda:formField id="same" type="enum"><camunda:value id="A" name="A" /></camunda:formField>')
    assert fields == [
        {"key": "subject", "label": "Subject", "type": "text", "default": "x", "required": True, "readonly": True,
         "min_length": 2, "max_length": 40},
        {"key": "count", "type": "number", "min": 1, "max": 9},
        {"key": "rate", "type": "number", "min": 0.5},
        {"key": "ok", "label": "OK", "type": "boolean"},
        {"key": "on", "label": "On", "type": "date"},
        {"key": "pick", "label": "Pick", "type": "select", "options": ["Alpha", "Beta"], "option_ids": ["a", "b"]},
        {"key": "same", "type": "select", "options": ["A"]},
    ]
    assert check_definition({"key": "k", "name": "n", "nodes": [
        {"key": "review", "assignee": "user:alice", "fields": fields}]}) == {}


def test_table_field_extension():
    columns = ('[{&quot;key&quot;: &quot;item&quot;, &quot;type&quot;: &quot;text&quot;, &quot;required&quot;: '
               'true}, {&quot;key&quot;: &quot;kind&quot;, &quot;type&quot;: &quot;select&quot;, '
               '&quot;options&quot;: [&quot;A&quot;]}]')
    fields = fields_of(
        '<camunda:formField id="lines" label="Lines" type="string"><camunda:properties>'
        '<camunda:property id="portal:type" value="table" />'
        f'<camunda:property id="portal:columns" value="{columns}" />'
        '<camunda:property id="hint" value="ignored" />'
        '</camunda:properties><camunda:validation><camunda:constraint name="required" />'
        '</camunda:validation></camunda:formField>')
    assert fields == [{"key": "lines", "label": "Lines", "type": "table", "required": True,
                       "columns": [{"key": "item", "type": "text", "required": True},
                                   {"key": "kind", "type": "select", "options": ["A"]}]}]


def _table(columns, kind="string", extra=""):
    return (f'<camunda:formField id="lines" type="{kind}"><camunda:properties>'
            '<camunda:property id="portal:type" value="table" />'
            f'<camunda:property id="portal:columns" value="{columns}" />{extra}</camunda:properties>'
            '</camunda:formField>')


@pytest.mark.parametrize("xml_field, words", [
    ('<camunda:formField id="f" type="file" />', "form field f: the type file is not supported"),
    ('<camunda:formField id="f" />', "form field f: the type  is not supported"),
    ('<camunda:formField id="f" type="string"><camunda:validation><camunda:constraint name="validator" '
     'config="x" /></camunda:validation></camunda:formField>', "form field f: the constraint validator"),
    ('<camunda:formField id="f" type="string"><camunda:validation><camunda:constraint name="min" config="1" />'
     '</camunda:validation></camunda:formField>', "form field f: the constraint min is not supported here"),
    ('<camunda:formField id="f" type="long"><camunda:validation><camunda:constraint name="maxlength" '
     'config="1" /></camunda:validation></camunda:formField>', "the constraint maxlength is not supported here"),
    ('<camunda:formField id="f" type="long"><camunda:validation><camunda:constraint name="min" config="ten" />'
     '</camunda:validation></camunda:formField>', "form field f: min needs a number"),
    ('<camunda:formField id="f" type="long"><camunda:validation><camunda:constraint name="max" config="NaN" />'
     '</camunda:validation></camunda:formField>', "form field f: max needs a number"),
    ('<camunda:formField id="f" type="string"><camunda:validation><camunda:constraint name="maxlength" '
     'config="-1" /></camunda:validation></camunda:formField>', "maxlength needs a whole number"),
    ('<camunda:formField id="f" type="long"><camunda:validation><camunda:constraint name="min" config="5" />'
     '<camunda:constraint name="max" config="1" /></camunda:validation></camunda:formField>',
     "min is greater than max"),
    ('<camunda:formField id="f" type="enum" />', "a select field needs options"),
    ('<camunda:formField id="f" type="enum"><camunda:value id="a" name="A" /><camunda:value id="b" name="A" />'
     '</camunda:formField>', "two values have the same name"),
    ('<camunda:formField id="action" type="string" />', "the key 'action' is reserved"),
    ('<camunda:formField id="f" type="string"><camunda:properties><camunda:property id="portal:widget" '
     'value="x" /></camunda:properties></camunda:formField>', "the property portal:widget is not supported"),
    (_table("[]"), "portal:columns must be a JSON list of columns"),
    (_table("{not json"), "portal:columns must be a JSON list of columns"),
    (_table("[{&quot;key&quot;: &quot;a&quot;, &quot;type&quot;: &quot;table&quot;}]"),
     "unknown type 'table'"),
    (_table("[{&quot;key&quot;: &quot;a&quot;, &quot;width&quot;: 3}]"), "the column key width is not supported"),
    (_table("[{&quot;key&quot;: &quot;a&quot;, &quot;required&quot;: &quot;yes&quot;}]"),
     "the column a has a bad required"),
    (_table("[{&quot;key&quot;: &quot;a&quot;}]", kind="long"), "portal:type = table on a string field"),
])
def test_form_refusals_name_the_field(xml_field, words):
    errors = refusal(chain(task_with('camunda:assignee="alice"', form(xml_field))))
    assert errors["review"].startswith('userTask "Review" (review)'), errors
    assert words in errors["review"], errors


def test_duplicate_field_keys_refused():
    errors = refusal(chain(task_with('camunda:assignee="alice"', form(
        '<camunda:formField id="f" type="string" />', '<camunda:formField id="f" type="long" />'))))
    assert "duplicate field key 'f'" in errors["review"]


# -- refused elements -----------------------------------------------------------------------------------------

@pytest.mark.parametrize("element, ident, words", [
    ('<bpmn:scriptTask id="s1" name="Compute" scriptFormat="python"><bpmn:script>x=1</bpmn:script>'
     '</bpmn:scriptTask>', "s1", 'scriptTask "Compute" (s1): script tasks are not run by the portal'),
    ('<bpmn:serviceTask id="s2" name="Call ERP" camunda:class="x.Y" />', "s2",
     'serviceTask "Call ERP" (s2): service tasks are not run'),
    ('<bpmn:sendTask id="s3" />', "s3", "sendTask s3: send tasks are not run"),
    ('<bpmn:receiveTask id="s4" />', "s4", "receiveTask s4: receive tasks are not run"),
    ('<bpmn:businessRuleTask id="s5" camunda:decisionRef="d" />', "s5", "business rule tasks are not run"),
    ('<bpmn:manualTask id="s6" name="Sign paper" />', "s6", "manual tasks are not run by the portal"),
    ('<bpmn:task id="s7" />', "s7", "a task without a type does nothing"),
    ('<bpmn:callActivity id="s8" calledElement="other" />', "s8", "call activities are not supported"),
    ('<bpmn:transaction id="s9" />', "s9", "transactions are not supported"),
    ('<bpmn:adHocSubProcess id="s10" />', "s10", "ad-hoc sub-processes are not supported"),
    ('<bpmn:intermediateCatchEvent id="e1" name="Wait"><bpmn:timerEventDefinition id="t">'
     '<bpmn:timeDuration>PT1H</bpmn:timeDuration></bpmn:timerEventDefinition></bpmn:intermediateCatchEvent>',
     "e1", 'intermediateCatchEvent "Wait" (e1): intermediate events are not supported'),
    ('<bpmn:intermediateThrowEvent id="e2"><bpmn:signalEventDefinition id="sg" /></bpmn:intermediateThrowEvent>',
     "e2", "intermediate events are not supported"),
    ('<bpmn:eventBasedGateway id="g1" />', "g1", "event-based gateways are not supported"),
    ('<bpmn:complexGateway id="g2" />', "g2", "complex gateways are not supported"),
    ('<bpmn:dataObjectReference id="d1" dataObjectRef="x" />', "d1", "data objects are not read"),
    ('<bpmn:subProcess id="es" triggeredByEvent="true" />', "es", "event sub-processes are not supported"),
])
def test_refused_elements_are_named(element, ident, words):
    errors = refusal(chain(TASK, element))
    assert words in errors[ident], errors


@pytest.mark.parametrize("definition, kind", [
    ("timerEventDefinition", "timer"), ("messageEventDefinition", "message"),
    ("signalEventDefinition", "signal"), ("conditionalEventDefinition", "conditional"),
])
def test_refused_start_events(definition, kind):
    body = (f'<bpmn:startEvent id="start" name="Go"><bpmn:{definition} id="x" /></bpmn:startEvent>{TASK}'
            '<bpmn:endEvent id="end" /><bpmn:sequenceFlow id="f0" sourceRef="start" targetRef="review" />'
            '<bpmn:sequenceFlow id="f1" sourceRef="review" targetRef="end" />')
    assert refusal(document(body))["start"] == f'startEvent "Go" (start): {kind} events are not supported.'


@pytest.mark.parametrize("definition, kind", [
    ("errorEventDefinition", "error"), ("escalationEventDefinition", "escalation"),
    ("messageEventDefinition", "message"), ("signalEventDefinition", "signal"),
    ("compensateEventDefinition", "compensate"),
])
def test_refused_end_events(definition, kind):
    body = (f'<bpmn:startEvent id="start" />{TASK}<bpmn:endEvent id="end"><bpmn:{definition} id="x" />'
            '</bpmn:endEvent><bpmn:sequenceFlow id="f0" sourceRef="start" targetRef="review" />'
            '<bpmn:sequenceFlow id="f1" sourceRef="review" targetRef="end" />')
    assert refusal(document(body))["end"] == f"endEvent end: {kind} events are not supported."


def test_boundary_event_refused():
    body = ('<bpmn:boundaryEvent id="late" name="Too late" attachedToRef="review">'
            '<bpmn:timerEventDefinition id="t" /></bpmn:boundaryEvent>')
    errors = refusal(chain(TASK, body))
    assert 'boundaryEvent "Too late" (late): boundary events are not supported' in errors["late"]


@pytest.mark.parametrize("inner, words", [
    ('<bpmn:standardLoopCharacteristics />', "bpmn:standardLoopCharacteristics is not supported"),
    ('<bpmn:multiInstanceLoopCharacteristics camunda:collection="${signers}"><bpmn:loopCardinality>3'
     '</bpmn:loopCardinality></bpmn:multiInstanceLoopCharacteristics>',
     "bpmn:loopCardinality is not supported in a multi-instance task"),
    ('<bpmn:multiInstanceLoopCharacteristics />', "needs camunda:collection"),
    ('<bpmn:multiInstanceLoopCharacteristics camunda:collection="${a.b}" />', "needs camunda:collection"),
    ('<bpmn:multiInstanceLoopCharacteristics camunda:collection="signers" camunda:elementVariable="a b" />',
     "camunda:elementVariable must be a variable name"),
    ('<bpmn:extensionElements><camunda:taskListener event="create" class="x.Y" /></bpmn:extensionElements>',
     "the extension camunda:taskListener is not supported"),
    ('<bpmn:extensionElements><camunda:inputOutput /></bpmn:extensionElements>',
     "the extension camunda:inputOutput is not supported"),
    ('<bpmn:extensionElements><camunda:formData /></bpmn:extensionElements><bpmn:extensionElements>'
     '<camunda:formData /></bpmn:extensionElements>', "has more than one form"),
    ('<bpmn:extensionElements><camunda:formData><camunda:businessKey /></camunda:formData>'
     '</bpmn:extensionElements>', "camunda:businessKey is not supported in a form"),
    ('<bpmn:ioSpecification id="io" />', "bpmn:ioSpecification is not supported"),
])
def test_user_task_refusals(inner, words):
    errors = refusal(chain(task_with('camunda:assignee="alice"', inner)))
    assert words in errors["review"], errors


def test_a_form_key_beside_form_fields_loads_with_a_warning_and_the_fields_are_used():
    fields = form('<camunda:formField id="amount" label="Amount" type="long" />')
    process = load_bpmn(chain(task_with('camunda:assignee="alice" camunda:formKey="embedded:app:forms/x.html"',
                                        fields)))
    [node] = process.nodes
    assert [f["key"] for f in node["fields"]] == ["amount"]
    assert process.warnings == ["User task 'Review': formKey 'embedded:app:forms/x.html' is not rendered; "
                                "the task uses its form fields."]


def test_a_form_key_without_form_fields_loads_with_a_warning():
    process = load_bpmn(chain(task_with('camunda:assignee="alice" camunda:formKey="app:approve.html"')))
    assert process.nodes[0]["fields"] == []
    assert process.warnings == ["User task 'Review': formKey 'app:approve.html' is not rendered; the task has "
                                "no form fields."]


def test_a_file_without_form_keys_has_no_warnings():
    assert load_bpmn(chain(TASK)).warnings == []


@pytest.mark.parametrize("attributes, words", [
    ('camunda:formRef="invoice-form"', "camunda:formRef is not supported"),
    ('camunda:formKey="camunda-forms:deployment:task.form"', "camunda:formKey is not supported"),
])
def test_linked_forms_are_still_refused(attributes, words):
    errors = refusal(chain(task_with('camunda:assignee="alice" ' + attributes)))
    assert words in errors["review"]


def test_a_form_key_on_a_start_event_is_still_refused():
    body = ('<bpmn:startEvent id="start" camunda:formKey="embedded:app:start.html" />' + TASK
            + '<bpmn:endEvent id="end" /><bpmn:sequenceFlow id="f0" sourceRef="start" targetRef="review" />'
            '<bpmn:sequenceFlow id="f1" sourceRef="review" targetRef="end" />')
    assert "camunda:formKey is not supported" in refusal(document(body))["start"]


CORPUS = "/work/shared/bpmn-corpus"


def _corpus(name):
    path = os.path.join(CORPUS, name)
    if not os.path.exists(path):
        pytest.skip(f"{path} is not here")
    with open(path, "rb") as fh:
        return fh.read()


def test_camundas_review_invoice_file_loads_with_its_form_keys_as_warnings():
    process = load_bpmn(_corpus("c7-reviewInvoice.bpmn"))
    assert [n["key"] for n in process.nodes] == ["assignReviewer", "reviewInvoice"]
    assert process.warnings == [
        "User task 'Assign Reviewer': formKey 'embedded:app:forms/assign-reviewer.html' is not rendered; "
        "the task has no form fields.",
        "User task 'Review Invoice': formKey 'embedded:app:forms/review-invoice.html' is not rendered; "
        "the task has no form fields."]


def test_a_modeler_task_form_with_a_form_key_beside_its_generated_fields_loads():
    data = _corpus("modeler-c7-user-task-form.bpmn").replace(
        b'<bpmn:userTask id="Task_1" name="Inspect Invoice">',
        b'<bpmn:userTask id="Task_1" name="Inspect Invoice" camunda:assignee="alice" '
        b'camunda:formKey="embedded:app:forms/inspect.html">')
    process = load_bpmn(data)
    assert [f["key"] for f in process.nodes[0]["fields"]] == ["invoiceNumber"]
    assert process.warnings == ["User task 'Inspect Invoice': formKey 'embedded:app:forms/inspect.html' is not "
                                "rendered; the task uses its form fields."]


def test_the_fox_invoice_files_other_refusals_stay():
    errors = refusal(_corpus("c7-fox-invoice-generated-forms.bpmn"))
    assert "service tasks are not run by the portal" in errors["saveInvoiceToSVN"]
    assert not any("formKey" in message for message in errors.values())


def test_process_level_problems():
    listener = ('<bpmn:extensionElements><camunda:executionListener event="start" class="x.Y" />'
                '</bpmn:extensionElements>')
    assert "the extension camunda:executionListener is not supported" in refusal(
        document(listener + chain_body(TASK)))["claim"]
    errors = refusal(chain(TASK, process='id="claim" name="Claim" isExecutable="false"'))
    assert errors == {"claim": 'process "Claim" (claim) is not executable (tick "Executable" in Camunda Modeler).'}
    assert "has no user task" in refusal(chain())["claim"]
    assert "has no start event" in refusal(document(TASK))["claim"]


def chain_body(*elements):
    """The inside of chain()'s process element."""
    data = chain(*elements).decode()
    return data[data.index(">", data.index("<bpmn:process")) + 1:data.index("</bpmn:process>")]


def test_one_process_per_file():
    second = '<bpmn:process id="other" isExecutable="true" />'
    errors = refusal(chain(TASK, after=second))
    assert errors == {"file": "A file holds exactly one process; this one holds 2."}
    errors = refusal(f"{HEAD}</bpmn:definitions>".encode())
    assert errors == {"file": "A file holds exactly one process; this one holds 0."}


def test_collaboration_message_flow_and_foreign_pool_refused():
    collaboration = ('<bpmn:collaboration id="c"><bpmn:participant id="p1" processRef="claim" />'
                     '<bpmn:participant id="p2" name="Bank" processRef="bank" />'
                     '<bpmn:messageFlow id="m1" sourceRef="p1" targetRef="p2" /></bpmn:collaboration>')
    errors = refusal(chain(TASK, before=collaboration))
    assert "message flows are not supported" in errors["m1"]
    assert 'participant "Bank" (p2): a pool must hold this file' in errors["p2"]


def test_root_and_foreign_elements():
    assert refusal(b'<svg xmlns="http://www.w3.org/2000/svg" />') == {
        "file": "This is not a BPMN 2.0 file (its root element is {http://www.w3.org/2000/svg}svg)."}
    errors = refusal(chain(TASK, before='<bpmn:dataStore id="ds" />'))
    assert "dataStore ds: this element is not supported" in errors["ds"]


# -- flows and conditions -------------------------------------------------------------------------------

def test_structure_problems_are_named():
    body = ('<bpmn:startEvent id="start" /><bpmn:startEvent id="start2" />'
            '<bpmn:userTask id="review" name="Review" camunda:assignee="alice" />'
            '<bpmn:userTask id="lost" name="Lost" camunda:assignee="alice" />'
            '<bpmn:userTask id="dead" name="Dead end" camunda:assignee="alice" />'
            '<bpmn:endEvent id="end" />'
            '<bpmn:sequenceFlow id="f1" sourceRef="start" targetRef="review" />'
            '<bpmn:sequenceFlow id="f2" sourceRef="review" targetRef="end" />'
            '<bpmn:sequenceFlow id="f3" sourceRef="start2" targetRef="dead" />'
            '<bpmn:sequenceFlow id="f4" sourceRef="lost" targetRef="end" />'
            '<bpmn:sequenceFlow id="f5" sourceRef="end" targetRef="review" />'
            '<bpmn:sequenceFlow id="f6" sourceRef="review" targetRef="nowhere" />')
    errors = refusal(document(body))
    assert "only one start event is allowed here" in errors["start2"]
    assert "cannot be reached from the start event" in errors["lost"]
    assert "has no outgoing sequence flow" in errors["dead"]
    assert "an end event has no outgoing flow" in errors["end"]
    assert "must join two elements of" in errors["f6"]
    assert "has no end event" in refusal(document(
        '<bpmn:startEvent id="start" />' + TASK + '<bpmn:sequenceFlow id="f" sourceRef="start" targetRef="review" />'
        '<bpmn:sequenceFlow id="g" sourceRef="review" targetRef="review" />'))["claim"]


def gateway_body(condition_xml, default='default="f_ok"', kind="exclusiveGateway"):
    return document(
        '<bpmn:startEvent id="start" />' + TASK + f'<bpmn:{kind} id="gw" name="Decision" {default} />'
        '<bpmn:endEvent id="ok" /><bpmn:endEvent id="no" />'
        '<bpmn:sequenceFlow id="f1" sourceRef="start" targetRef="review" />'
        '<bpmn:sequenceFlow id="f2" sourceRef="review" targetRef="gw" />'
        f'<bpmn:sequenceFlow id="f_no" name="No" sourceRef="gw" targetRef="no">{condition_xml}</bpmn:sequenceFlow>'
        '<bpmn:sequenceFlow id="f_ok" sourceRef="gw" targetRef="ok" />')


def condition(text, language=None):
    attribute = f' language="{language}"' if language else ""
    return f'<bpmn:conditionExpression xsi:type="bpmn:tFormalExpression"{attribute}>{text}</bpmn:conditionExpression>'


def test_gateway_with_condition_and_default(expressions):
    process = load_bpmn(gateway_body(condition("${action == 'reject'}")))
    assert process.conditions == {"f_no": "${action == 'reject'}"}
    assert process.nodes[0]["tests_action"] is True
    process = load_bpmn(gateway_body(condition("amount &gt; 100")))
    assert process.conditions == {"f_no": "amount > 100"} and process.nodes[0]["tests_action"] is False


def test_condition_outside_the_subset_names_flow_and_expression(expressions):
    errors = refusal(gateway_body(condition("${execution.getVariable('x') == 1}")))
    assert list(errors) == ["f_no"]
    assert errors["f_no"].startswith(
        'sequenceFlow "No" (f_no): the condition is refused: "${execution.getVariable(\'x\') == 1}": ')


def test_completion_condition_outside_the_subset_names_task(expressions):
    loop = ('<bpmn:multiInstanceLoopCharacteristics camunda:collection="signers"><bpmn:completionCondition>'
            '${__import__(\'os\')}</bpmn:completionCondition></bpmn:multiInstanceLoopCharacteristics>')
    errors = refusal(chain(task_with('camunda:assignee="${signer}"', loop)))
    assert errors["review"].startswith(
        'userTask "Review" (review): the condition is refused: "${__import__(\'os\')}": ')


@pytest.mark.parametrize("gateway_kwargs, condition_xml, ident, words", [
    ({}, condition("x == 1", language="javascript"), "f_no", "script conditions are not supported"),
    ({}, condition("  "), "f_no", "the condition is empty"),
    ({"default": 'default="f_no"'}, condition("x == 1"), "f_no", "the default flow has no condition"),
    ({"default": ""}, "", "f_no", "leaves exclusiveGateway \"Decision\" (gw) with no condition"),
    ({"default": 'default="f1"'}, condition("x == 1"), "gw", "the default flow must be one of"),
    ({"default": "", "kind": "parallelGateway"}, condition("x == 1"), "f_no",
     "conditions are read only on flows leaving an exclusive or inclusive gateway"),
])
def test_flow_condition_refusals(gateway_kwargs, condition_xml, ident, words):
    errors = refusal(gateway_body(condition_xml, **gateway_kwargs))
    assert words in errors[ident], errors


def test_subprocess_is_checked_inside():
    body = ('<bpmn:subProcess id="sp" name="Inner"><bpmn:startEvent id="s2" />'
            '<bpmn:scriptTask id="inner_script" /><bpmn:endEvent id="e2" />'
            '<bpmn:sequenceFlow id="g1" sourceRef="s2" targetRef="inner_script" />'
            '<bpmn:sequenceFlow id="g2" sourceRef="inner_script" targetRef="e2" /></bpmn:subProcess>')
    assert "script tasks are not run" in refusal(chain(TASK, body))["inner_script"]
    looped = '<bpmn:subProcess id="sp"><bpmn:multiInstanceLoopCharacteristics /></bpmn:subProcess>'
    assert "multi-instance are read on user tasks only" in refusal(chain(TASK, looped))["sp"]


def test_spiff_schema_check_runs_after_the_portal_checks():
    # Passes the portal's checks but breaks the BPMN schema (outgoing before extensionElements).
    task = ('<bpmn:userTask id="review" camunda:assignee="alice"><bpmn:outgoing>f1</bpmn:outgoing>'
            '<bpmn:extensionElements><camunda:formData /></bpmn:extensionElements></bpmn:userTask>')
    errors = refusal(chain(task))
    assert list(errors) == ["file"]
    assert errors["file"].startswith("The workflow engine refused the file:")


# -- hostile and broken files ---------------------------------------------------------------------------

def test_not_xml():
    assert "is not well-formed XML" in refusal(b"\x89PNG\r\n\x1a\n not xml")["file"]
    assert "is not well-formed XML" in refusal(chain(TASK)[:-20])["file"]
    gbk = chain(task_with('camunda:assignee="alice" name="审批"')).decode().replace('encoding="UTF-8"', 'encoding="GBK"')
    assert refusal(gbk.encode("gbk")) == {"file": "The file is not UTF-8 text."}


def test_entity_bomb_and_external_entities_refused():
    bomb = ('<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol">'
            + "".join(f'<!ENTITY lol{i} "{("&lol%s;" % (i - 1 if i > 1 else "")) * 10}">' for i in range(1, 10))
            + ']><bpmn:definitions xmlns:bpmn="http://www.omg.org/spec/BPMN/20100524/MODEL">&lol9;'
            '</bpmn:definitions>')
    assert refusal(bomb.encode()) == {"file": "The file declares a DTD or entities, which BPMN files never need."}
    external = ('<?xml version="1.0"?><!DOCTYPE d [<!ENTITY x SYSTEM "file:///etc/passwd">]>'
                + chain(task_with('camunda:assignee="alice" name="&x;"')).decode().split("?>", 1)[1])
    assert "declares a DTD" in refusal(external.encode())["file"]
    assert "declares a DTD" in refusal(b'<!DOCTYPE d SYSTEM "http://example.invalid/x.dtd"><d/>')["file"]


def test_size_limit_is_two_megabytes():
    base = chain(TASK)
    padding = MAX_BPMN_BYTES - len(base) - len("<!---->")
    at_limit = base + b"<!--" + b"x" * padding + b"-->"
    assert len(at_limit) == MAX_BPMN_BYTES
    assert load_bpmn(at_limit).nodes[0]["key"] == "review"
    assert refusal(at_limit + b" ") == {"file": "The file is larger than 2 MB."}


def test_deep_nesting_refused():
    deep = document(TASK.replace(" />", ">" + "<bpmn:documentation>" * 100 + "</bpmn:documentation>" * 100
                                 + "</bpmn:userTask>"))
    assert refusal(deep) == {"file": "The file nests elements more than 64 deep."}


def test_element_count_limit(expressions):
    """SpiffWorkflow's parser overflows the stack on long chains; the limit answers first, with a message."""
    def long_process(nodes):  # start + 3 elements per node + end
        definition = copy.deepcopy(LEAVE)
        definition["nodes"] = [dict(LEAVE["nodes"][1], key=f"n{i}") for i in range(nodes)]
        return bpmn_from_json(definition).encode()
    assert MAX_FLOW_NODES == 500
    assert len(load_bpmn(long_process(166)).nodes) == 166
    assert refusal(long_process(167)) == {
        "file": "The process has 503 events, tasks and gateways; at most 500 are allowed."}


def test_every_problem_is_reported_at_once():
    errors = refusal(chain(task_with(""), '<bpmn:scriptTask id="s1" />', '<bpmn:serviceTask id="s2" />'))
    assert set(errors) == {"review", "s1", "s2"}


# -- JSON -> BPMN -------------------------------------------------------------------------------------------

@pytest.mark.parametrize("definition", [EXPENSE, LEAVE], ids=["expense", "leave"])
def test_json_round_trip(definition, expressions):
    xml = bpmn_from_json(definition)
    process = load_bpmn(xml.encode())
    assert (process.key, process.name) == (definition["key"], definition["name"])
    assert [{k: n[k] for k in ("key", "name", "assignee", "fields")} for n in process.nodes] == definition["nodes"]
    assert all(n["tests_action"] for n in process.nodes)
    assert sorted(process.conditions.values()) == ["${action == 'reject'}"] * len(definition["nodes"])


def test_generated_file_has_a_diagram_for_every_element():
    root = etree.fromstring(bpmn_from_json(EXPENSE).encode())
    ns = {"bpmn": "http://www.omg.org/spec/BPMN/20100524/MODEL",
          "bpmndi": "http://www.omg.org/spec/BPMN/20100524/DI",
          "dc": "http://www.omg.org/spec/DD/20100524/DC",
          "camunda": "http://camunda.org/schema/1.0/bpmn"}
    elements = {el.get("id") for el in root.find("bpmn:process", ns)}
    drawn = {el.get("bpmnElement") for el in root.iterfind(".//bpmndi:BPMNPlane/*", ns)}
    # start, 3 per node (task, gateway, rejected end), approved end and 7 flows
    assert elements == drawn and len(elements) == 1 + 3 * 2 + 1 + 7
    assert len(root.findall(".//bpmn:endEvent/bpmn:terminateEventDefinition", ns)) == 2
    assert root.find(".//bpmn:userTask[@id='finance']", ns).get(
        "{http://camunda.org/schema/1.0/bpmn}candidateGroups") == "finance"
    bounds = [float(b.get("x")) for b in root.iterfind(".//dc:Bounds", ns)]
    assert len(bounds) == 8 and min(bounds) > 0


def test_generated_ids_do_not_clash_with_node_keys(expressions):
    definition = copy.deepcopy(LEAVE)
    definition["nodes"][0]["key"] = "StartEvent_1"
    definition["nodes"][1]["key"] = "Gateway_StartEvent_1"
    process = load_bpmn(bpmn_from_json(definition).encode())
    assert [n["key"] for n in process.nodes] == ["StartEvent_1", "Gateway_StartEvent_1"]


def test_bpmn_from_json_refuses_what_it_cannot_draw():
    with pytest.raises(ValidationFailed) as caught:
        bpmn_from_json({"key": "x", "name": "X", "nodes": [{"key": "a", "assignee": "nobody"}]})
    assert "nodes[0].assignee" in caught.value.errors
    bad = copy.deepcopy(LEAVE)
    bad["nodes"][0]["key"] = "1st step"
    with pytest.raises(ValidationFailed) as caught:
        bpmn_from_json(bad)
    assert "nodes[0].key" in caught.value.errors
