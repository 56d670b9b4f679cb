"""BPMN processes run on the engine: each construct of contract section 5b, end to end through single decisions
and batches, and what the Task rows say at every step."""
import os
import re

import pytest

from bpmn_support import end, flow, gateway, multi_instance, number_field, process_xml, user_task
from support import ROOT, assert_counters_match_items
from portal.batches import creation, runner
from portal.errors import NotFound, UserError
from portal.infra.extensions import db
from portal.models import Instance, Task
from portal.workflow import engine
from portal.workflow.process_files import load_process_file


def _load(content, name="p.bpmn"):
    definition, _created = load_process_file(name, content)
    db.session.commit()
    return definition


def _start(key, user, data=None, title="Case"):
    instance = engine.start_instance(key, title, data or {}, user)
    db.session.commit()
    return instance


def _pending(instance):
    db.session.expire_all()
    return sorted(((t.node.key, t.assignee_user.username if t.assignee_user else t.assignee_role)
                   for t in db.session.get(Instance, instance.id).tasks if t.status == "pending"),
                  key=lambda pair: (pair[0], pair[1] or ""))


def _task_at(instance, key, user=None):
    db.session.expire_all()
    return next(t for t in db.session.get(Instance, instance.id).tasks
                if t.status == "pending" and t.node.key == key
                and (user is None or t.assignee_user_id in (None, user.id)))


# Every decision a test makes through _decide is made once as a single decision and once as a one-item
# batch run by the batch runner: the constructs behave the same whichever way a task is decided.
DECIDE_VIA = {"way": "single"}


@pytest.fixture(autouse=True, params=["single", "batch"])
def decide_via(request):
    DECIDE_VIA["way"] = request.param
    yield request.param
    DECIDE_VIA["way"] = "single"


def _decide(instance, key, user, action="approve", form=None):
    task = _task_at(instance, key, user)
    if DECIDE_VIA["way"] == "single":
        engine.decide(task.id, user, action, form=form or {})
        db.session.commit()
        return task
    from portal.models import BatchItem
    batch = creation.create_batch(user, task.node, task_ids=[task.id], action=action, form=form or {})
    db.session.commit()
    runner.run_inline(batch.id)
    db.session.expire_all()
    item = db.session.execute(db.select(BatchItem).where(BatchItem.batch_id == batch.id)).scalar_one()
    assert item.status == "success", (item.status, item.error)
    assert_counters_match_items(batch.id)
    return task


def _status(instance):
    db.session.expire_all()
    return db.session.get(Instance, instance.id).status


@pytest.fixture
def people(factory):
    return {name: factory.user(name, workflow_roles=roles) for name, roles in
            (("alice", ""), ("bob", "finance"), ("carol", ""), ("dave", "directors"), ("erin", "finance"))}


ROUTED = process_xml("routed", (
    user_task("review", "alice", fields=number_field("amount", required=True))
    + gateway("exclusiveGateway", "big", default="f_small")
    + user_task("director", groups="directors") + user_task("clerk", "carol")
    + end("done")
    + flow("f0", "start", "review") + flow("f1", "review", "big")
    + flow("f_big", "big", "director", "${amount > 10000}") + flow("f_small", "big", "clerk")
    + flow("f2", "director", "done") + flow("f3", "clerk", "done")))


def test_an_exclusive_gateway_routes_on_the_form_values(app, people):
    _load(ROUTED)
    large, small = _start("routed", people["bob"]), _start("routed", people["bob"])
    _decide(large, "review", people["alice"], form={"amount": 20000})
    _decide(small, "review", people["alice"], form={"amount": 50})
    assert _pending(large) == [("director", "directors")]
    assert _pending(small) == [("clerk", "carol")]
    _decide(small, "clerk", people["carol"])
    assert _status(small) == "approved"
    assert db.session.get(Instance, small.id).data == {"amount": 50, "action": "approve"}


def test_a_reject_where_the_diagram_does_not_test_action_ends_the_instance(app, people):
    _load(ROUTED)
    instance = _start("routed", people["bob"])
    _decide(instance, "review", people["alice"], "reject")
    assert _status(instance) == "rejected" and _pending(instance) == []


LOOP = process_xml("loop", (
    user_task("draft", "${initiator}") + user_task("check", "alice")
    + gateway("exclusiveGateway", "decision", default="f_ok") + end("done")
    + flow("f0", "start", "draft") + flow("f1", "draft", "check") + flow("f2", "check", "decision")
    + flow("f_back", "decision", "draft", "action == 'reject'") + flow("f_ok", "decision", "done")),
    initiator="initiator")


def test_a_reject_goes_back_where_the_diagram_says_and_the_loop_ends_approved(app, people):
    _load(LOOP)
    instance = _start("loop", people["carol"])
    assert _pending(instance) == [("draft", "carol")]  # ${initiator}: the starter
    _decide(instance, "draft", people["carol"])
    _decide(instance, "check", people["alice"], "reject")
    assert _pending(instance) == [("draft", "carol")]
    _decide(instance, "draft", people["carol"])
    _decide(instance, "check", people["alice"])
    assert _status(instance) == "approved"
    assert [t.node.key for t in db.session.get(Instance, instance.id).tasks] == ["draft", "check"] * 2


PARALLEL = process_xml("parallel", (
    user_task("first", "alice") + gateway("parallelGateway", "split")
    + user_task("legal", "carol") + user_task("money", groups="finance")
    + gateway("parallelGateway", "join") + user_task("last", "alice") + end("done")
    + flow("f0", "start", "first") + flow("f1", "first", "split")
    + flow("f2", "split", "legal") + flow("f3", "split", "money")
    + flow("f4", "legal", "join") + flow("f5", "money", "join") + flow("f6", "join", "last")
    + flow("f7", "last", "done")))


def test_a_parallel_split_opens_both_tasks_and_the_join_waits_for_both(app, people):
    _load(PARALLEL)
    instance = _start("parallel", people["bob"])
    _decide(instance, "first", people["alice"])
    assert _pending(instance) == [("legal", "carol"), ("money", "finance")]
    _decide(instance, "money", people["erin"])
    assert _pending(instance) == [("legal", "carol")]
    _decide(instance, "legal", people["carol"])
    assert _pending(instance) == [("last", "alice")]
    _decide(instance, "last", people["alice"])
    assert _status(instance) == "approved"


INCLUSIVE = process_xml("inclusive", (
    user_task("ask", "alice", fields=number_field("amount") + number_field("risk"))
    + gateway("inclusiveGateway", "which", default="f_none")
    + user_task("a", "carol") + user_task("b", groups="finance") + user_task("c", groups="directors")
    + gateway("inclusiveGateway", "merge") + end("done")
    + flow("f0", "start", "ask") + flow("f1", "ask", "which")
    + flow("f_a", "which", "a", "amount > 100") + flow("f_b", "which", "b", "risk >= 3")
    + flow("f_none", "which", "c")
    + flow("f2", "a", "merge") + flow("f3", "b", "merge") + flow("f4", "c", "merge") + flow("f5", "merge", "done")))


@pytest.mark.parametrize("form, expected", [
    ({"amount": 500, "risk": 5}, [("a", "carol"), ("b", "finance")]),
    ({"amount": 500, "risk": 1}, [("a", "carol")]),
    ({"amount": 5, "risk": 1}, [("c", "directors")]),
])
def test_an_inclusive_gateway_takes_every_true_flow_or_the_default(app, people, form, expected):
    _load(INCLUSIVE)
    instance = _start("inclusive", people["bob"])
    _decide(instance, "ask", people["alice"], form=form)
    assert _pending(instance) == expected
    for key, _who in expected:
        task = _task_at(instance, key)
        who = {"carol": people["carol"], "finance": people["bob"], "directors": people["dave"]}[_who]
        engine.decide(task.id, who, "approve", form={})
        db.session.commit()
    assert _status(instance) == "approved"


def _countersign(completion=None, sequential=False):
    return process_xml("signing", (
        user_task("sign", "${signer}", multi=multi_instance("${signers}", "signer", sequential=sequential,
                                                             completion=completion))
        + gateway("exclusiveGateway", "result", default="f_ok") + user_task("pay", groups="finance")
        + end("refused", terminate=True) + end("done")
        + flow("f0", "start", "sign") + flow("f1", "sign", "result")
        + flow("f_no", "result", "refused", "action == 'reject'") + flow("f_ok", "result", "pay")
        + flow("f2", "pay", "done")))


def test_a_parallel_countersign_gives_each_signer_a_task_and_waits_for_all(app, people):
    _load(_countersign())
    instance = _start("signing", people["bob"], {"signers": ["alice", "carol", "dave"]})
    assert _pending(instance) == [("sign", "alice"), ("sign", "carol"), ("sign", "dave")]
    _decide(instance, "sign", people["carol"])
    _decide(instance, "sign", people["alice"])
    assert _pending(instance) == [("sign", "dave")]
    _decide(instance, "sign", people["dave"])
    assert _pending(instance) == [("pay", "finance")]


def test_a_completion_condition_ends_the_countersign_early_and_withdraws_the_rest(app, people):
    _load(_countersign("nrOfCompletedInstances >= 2 || action == 'reject'"))
    instance = _start("signing", people["bob"], {"signers": ["alice", "carol", "dave"]})
    _decide(instance, "sign", people["alice"])
    _decide(instance, "sign", people["carol"])
    assert _pending(instance) == [("pay", "finance")]
    statuses = sorted(t.status for t in db.session.get(Instance, instance.id).tasks if t.node.key == "sign")
    assert statuses == ["cancelled", "done", "done"]

    vetoed = _start("signing", people["bob"], {"signers": ["alice", "carol", "dave"]})
    _decide(vetoed, "sign", people["dave"], "reject")
    assert _pending(vetoed) == [] and _status(vetoed) == "rejected"


def test_a_sequential_countersign_asks_one_signer_after_the_other(app, people):
    _load(_countersign(sequential=True))
    instance = _start("signing", people["bob"], {"signers": ["carol", "alice"]})
    assert _pending(instance) == [("sign", "carol")]
    _decide(instance, "sign", people["carol"])
    assert _pending(instance) == [("sign", "alice")]
    _decide(instance, "sign", people["alice"], "reject")
    assert _status(instance) == "rejected"


def test_a_countersign_without_its_list_is_refused_at_start_and_writes_nothing(app, people):
    _load(_countersign())
    with pytest.raises(UserError):
        engine.start_instance("signing", "Case", {}, people["bob"])
    db.session.rollback()
    assert db.session.query(Instance).count() == 0


SUBPROCESS = process_xml("nested", (
    user_task("before", "alice")
    + '<bpmn:subProcess id="inner"><bpmn:startEvent id="inner_start"/>'
    + user_task("inside", "carol") + end("inner_end")
    + flow("g0", "inner_start", "inside") + flow("g1", "inside", "inner_end") + "</bpmn:subProcess>"
    + user_task("after", "alice") + end("done")
    + flow("f0", "start", "before") + flow("f1", "before", "inner") + flow("f2", "inner", "after")
    + flow("f3", "after", "done")))


def test_an_embedded_subprocess_runs_its_user_tasks_in_turn(app, people):
    _load(SUBPROCESS)
    instance = _start("nested", people["bob"])
    _decide(instance, "before", people["alice"])
    assert _pending(instance) == [("inside", "carol")]
    _decide(instance, "inside", people["carol"])
    assert _pending(instance) == [("after", "alice")]
    _decide(instance, "after", people["alice"])
    assert _status(instance) == "approved"


TERMINATE = process_xml("terminate", (
    gateway("parallelGateway", "split") + user_task("slow", "carol") + user_task("fast", "alice")
    + end("stop", terminate=True) + end("slow_end")
    + flow("f0", "start", "split") + flow("f1", "split", "slow") + flow("f2", "split", "fast")
    + flow("f3", "fast", "stop") + flow("f4", "slow", "slow_end")))


def test_a_terminate_end_event_withdraws_the_other_branches(app, people):
    _load(TERMINATE)
    instance = _start("terminate", people["bob"])
    assert _pending(instance) == [("fast", "alice"), ("slow", "carol")]
    _decide(instance, "fast", people["alice"])
    assert _status(instance) == "approved"
    slow = next(t for t in db.session.get(Instance, instance.id).tasks if t.node.key == "slow")
    assert slow.status == "cancelled"
    with pytest.raises(Exception) as refused:
        engine.decide(slow.id, people["carol"], "approve", form={})
    db.session.rollback()
    assert getattr(refused.value, "reason", None) in ("done", "unavailable")


CANDIDATES = process_xml("candidates", (
    user_task("pick", users="alice,carol", groups="directors") + end("done")
    + flow("f0", "start", "pick") + flow("f1", "pick", "done")))


def test_candidate_users_and_groups_may_act_and_nobody_else(app, people, factory):
    _load(CANDIDATES)
    instance = _start("candidates", people["bob"])
    task = _task_at(instance, "pick")
    from portal.workflow.visibility import pending_tasks_query
    for name in ("alice", "carol", "dave"):
        assert [t.id for t in db.session.execute(pending_tasks_query(people[name])).scalars()] == [task.id]
    assert list(db.session.execute(pending_tasks_query(people["erin"])).scalars()) == []
    with pytest.raises(NotFound):
        engine.decide(task.id, people["erin"], "approve", form={})
    db.session.rollback()
    engine.decide(task.id, people["dave"], "approve", form={})
    db.session.commit()
    assert _status(instance) == "approved"


def test_a_variable_assignee_that_names_nobody_refuses_the_decision_and_changes_nothing(app, people):
    _load(process_xml("handover", (
        user_task("one", "alice", fields='<camunda:formField id="next" label="Next" type="string"/>')
        + user_task("two", "${next}") + end("done")
        + flow("f0", "start", "one") + flow("f1", "one", "two") + flow("f2", "two", "done"))))
    instance = _start("handover", people["bob"])
    task = _task_at(instance, "one")
    with pytest.raises(UserError):
        engine.decide(task.id, people["alice"], "approve", form={"next": "nobody"})
    db.session.rollback()
    assert _pending(instance) == [("one", "alice")]
    _decide(instance, "one", people["alice"], form={"next": "carol"})
    assert _pending(instance) == [("two", "carol")]


def test_a_batch_on_a_routed_node_sends_each_item_its_own_way(app, people):
    _load(ROUTED)
    instances = [_start("routed", people["bob"], title=f"Case {i}") for i in range(6)]
    tasks = [_task_at(instance, "review") for instance in instances]
    batch = creation.create_batch(people["alice"], tasks[0].node, task_ids=[t.id for t in tasks],
                                  action="approve", form={"amount": 20000})
    db.session.commit()
    assert runner.run_inline(batch.id) == 6
    assert_counters_match_items(batch.id)
    for instance in instances:
        assert _pending(instance) == [("director", "directors")]
    director_tasks = [_task_at(instance, "director") for instance in instances]
    second = creation.create_batch(people["dave"], director_tasks[0].node,
                                   task_ids=[t.id for t in director_tasks], action="approve")
    db.session.commit()
    runner.run_inline(second.id)
    assert {_status(instance) for instance in instances} == {"approved"}
    assert db.session.query(Task).filter_by(status="done").count() == 12


def test_the_example_expense_process_runs_to_the_end(app, people):
    with open(os.path.join(ROOT, "examples", "expense.bpmn"), "rb") as fh:
        _load(fh.read(), "expense.bpmn")
    instance = _start("expense_claim", people["bob"], {"signers": ["carol", "dave"]})
    form = {"amount": 20000, "category": "Travel"}
    _decide(instance, "manager_review", people["alice"], "reject", form=form)
    assert _pending(instance) == [("revise_claim", "bob")]
    _decide(instance, "revise_claim", people["bob"], form={"answer": "Receipts attached"})
    _decide(instance, "manager_review", people["alice"], form=form)
    assert _pending(instance) == [("director_review", "directors")]
    _decide(instance, "director_review", people["dave"])
    assert _pending(instance) == [("countersign", "carol"), ("countersign", "dave")]
    _decide(instance, "countersign", people["carol"])
    _decide(instance, "countersign", people["dave"])
    assert _pending(instance) == [("finance_review", "finance")]
    _decide(instance, "finance_review", people["erin"], form={"pay_on": "2026-12-01"})
    assert _status(instance) == "approved"


def test_an_excel_import_on_a_routed_node_sends_each_row_its_way_and_the_batch_page_says_where(client, app, people,
                                                                                                   factory):
    from excel_support import single_file, upload
    from portal.excel.templates import build_template
    from support import login
    definition = _load(ROUTED)
    instances = [_start("routed", people["bob"], title=f"Case {i}") for i in range(4)]
    tasks = [_task_at(instance, "review") for instance in instances]
    node = tasks[0].node
    template = build_template(people["alice"], node, "single", "en")
    data = single_file(template, [
        (tasks[0].id, {"C": "approve", "E": 20000}), (tasks[1].id, {"C": "approve", "E": 30000}),
        (tasks[2].id, {"C": "approve", "E": 5}), (tasks[3].id, {"C": "reject"})])
    headers = {"Authorization": f"Bearer {factory.token(people['alice'])}"}
    response = upload(client, headers, node, data)
    assert response.status_code == 202, response.get_data(as_text=True)
    batch_id = response.get_json()["batch"]["id"]
    assert runner.run_inline(batch_id) == 4
    assert [_pending(i) for i in instances] == [[("director", "directors")], [("director", "directors")],
                                                [("clerk", "carol")], []]
    assert _status(instances[3]) == "rejected"
    assert definition.source == "bpmn"

    login(client, "alice")
    page = client.get(f"/batches/{batch_id}").get_data(as_text=True)
    went = [text.strip() for text in re.findall(r'<td [^>]*data-went-to>([^<]*)</td>', page)]
    assert sorted(went) == ["Clerk", "Director", "Director", "Ended (rejected)"]
    counts = re.findall(r'data-destination="([^"]+)"><span>[^<]*</span><span class="fw-semibold">(\d+)<', page)
    assert counts == [("Director", "2"), ("Clerk", "1"), ("Ended (rejected)", "1")]


def test_a_read_only_field_is_never_set_by_a_decision(app, people):
    _load(process_xml("readonly", (
        user_task("look", "alice", fields=(
            '<camunda:formField id="limit" label="Limit" type="long"><camunda:validation>'
            '<camunda:constraint name="required"/><camunda:constraint name="readonly"/></camunda:validation>'
            '</camunda:formField>' + number_field("amount")))
        + end("done") + flow("f0", "start", "look") + flow("f1", "look", "done"))))
    instance = _start("readonly", people["bob"], {"limit": 500})
    task = _decide(instance, "look", people["alice"], form={"limit": 999999, "amount": 3})
    db.session.expire_all()
    assert db.session.get(Task, task.id).form == {"amount": 3}
    assert db.session.get(Instance, instance.id).data["limit"] == 500


def _example():
    with open(os.path.join(ROOT, "examples", "expense.bpmn"), "rb") as fh:
        return fh.read()


def test_a_per_instance_import_with_table_lines_on_a_bpmn_node(client, app, people, factory):
    import io

    import openpyxl
    from excel_support import save, upload
    from portal.excel.templates import build_template
    _load(_example(), "expense.bpmn")
    claims = [_start("expense_claim", people["bob"], {"signers": ["carol"]}, title=f"Claim {i}") for i in range(2)]
    tasks = [_task_at(claim, "manager_review") for claim in claims]
    book = openpyxl.load_workbook(io.BytesIO(build_template(people["alice"], tasks[0].node, "per_instance", "en")))
    sheet = book[str(tasks[0].id)]
    sheet["B3"], sheet["B5"], sheet["B6"] = "approve", 20000, "Travel"
    sheet["A13"], sheet["B13"], sheet["A14"], sheet["B14"] = "Flight", 1800, "Hotel", 640
    book[str(tasks[1].id)]["B3"] = "reject"
    headers = {"Authorization": f"Bearer {factory.token(people['alice'])}"}
    response = upload(client, headers, tasks[0].node, save(book), mode="per_instance")
    assert response.status_code == 202, response.get_data(as_text=True)
    runner.run_inline(response.get_json()["batch"]["id"])
    db.session.expire_all()
    assert db.session.get(Task, tasks[0].id).form["lines"] == [{"item": "Flight", "cost": 1800},
                                                             {"item": "Hotel", "cost": 640}]
    assert _pending(claims[0]) == [("director_review", "directors")]
    assert _pending(claims[1]) == [("revise_claim", "bob")]


def test_the_admin_uploads_a_bpmn_file_and_a_refused_one_changes_nothing(client, app, people, factory):
    from support import csrf_token, login
    from portal.models import ProcessDefinition
    factory.user("root", role="admin")
    login(client, "root")

    def upload_file(content, name):
        return client.post("/admin/processes/upload", content_type="multipart/form-data", data={
            "csrf_token": csrf_token(client, "/admin/processes"), "file": (io.BytesIO(content), name)})

    import io
    refused = _example().replace(b'<bpmn:userTask id="finance_review"', b'<bpmn:scriptTask id="finance_review"')
    refused = refused.replace(b"</bpmn:userTask>\n    <bpmn:endEvent id=\"EndEvent_paid\"",
                              b"</bpmn:scriptTask>\n    <bpmn:endEvent id=\"EndEvent_paid\"")
    response = upload_file(refused, "expense.bpmn")
    page = response.get_data(as_text=True)
    assert response.status_code == 400 and "finance_review" in page and "script tasks" in page
    assert "Traceback" not in page
    assert db.session.query(ProcessDefinition).count() == 0

    response = upload_file(_example(), "expense.bpmn")
    assert response.status_code == 302
    definition = db.session.query(ProcessDefinition).one()
    assert (definition.key, definition.source, definition.version) == ("expense_claim", "bpmn", 1)
    page = client.get(f"/admin/processes/{definition.id}").get_data(as_text=True)
    assert "Manager review" in page and "Countersign" in page
    assert upload_file(_example(), "expense.bpmn").status_code == 302  # unchanged: no new version
    assert db.session.query(ProcessDefinition).count() == 1


def test_the_reject_rule_behaves_as_its_picture_in_the_docs_says(app, people):
    with open(os.path.join(ROOT, "docs", "images", "reject-rule.bpmn"), "rb") as fh:
        definition = _load(fh.read())
    assert {node.key: node.tests_action for node in definition.nodes} == {"draft": False, "review": True}
    instance = _start("reject_rule", people["carol"])
    _decide(instance, "draft", people["carol"])
    _decide(instance, "review", people["alice"], "reject")
    assert _pending(instance) == [("draft", "carol")]
    _decide(instance, "draft", people["carol"], "reject")
    assert _status(instance) == "rejected" and _pending(instance) == []
