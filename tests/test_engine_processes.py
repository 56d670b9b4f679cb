"""An instance's engine state goes on the same way in whichever process restores it.

Each process parses a BPMN file once and keeps its spec (``runtime.specs``); an instance started in one
process (a web process, a worker's lane) is decided in others. Every scenario below runs twice: on one
workflow object kept in memory, and restored from its stored state on a freshly parsed spec before every
step, as a new process would (``runtime.specs.cache_clear()``). The two must agree at every step: the same
ready tasks, the same end, the same variables.
"""
import pytest

from bpmn_support import end, flow, gateway, multi_instance, process_xml, user_task
from portal.workflow.engine import runtime

SIGNERS = ["alice", "carol", "dave"]


def _signing(sequential=False, completion=None, after="end"):
    sign = user_task("sign", "${signer}", multi=multi_instance("signers", "signer", sequential=sequential,
                                                               completion=completion))
    if after == "end":
        return process_xml("signing", sign + end("done") + flow("f0", "start", "sign")
                           + flow("f1", "sign", "done"))
    return process_xml("signing", (
        sign + gateway("exclusiveGateway", "result", default="f_ok") + user_task("pay", "erin")
        + end("refused", terminate=True) + end("done")
        + flow("f0", "start", "sign") + flow("f1", "sign", "result")
        + flow("f_no", "result", "refused", "action == 'reject'") + flow("f_ok", "result", "pay")
        + flow("f2", "pay", "done")))


# A countersign inside an embedded sub-process: the sub-process has its own spec.
NESTED = process_xml("nested", (
    '<bpmn:subProcess id="block"><bpmn:startEvent id="block_start"/>'
    + user_task("sign", "${signer}", multi=multi_instance("signers", "signer"))
    + '<bpmn:endEvent id="block_end"/>'
    + flow("fb0", "block_start", "sign") + flow("fb1", "sign", "block_end") + '</bpmn:subProcess>'
    + user_task("pay", "erin") + end("done")
    + flow("f0", "start", "block") + flow("f1", "block", "pay") + flow("f2", "pay", "done")))

# (file, [(node, signer or None, action)]): the decisions, in order.
SCENARIOS = {
    "parallel into an end": (_signing(), [("sign", "carol", "approve"), ("sign", "alice", "approve"),
                                          ("sign", "dave", "approve")]),
    "parallel into a gateway": (_signing(after="gateway"), [
        ("sign", "dave", "approve"), ("sign", "alice", "approve"), ("sign", "carol", "approve"),
        ("pay", None, "approve")]),
    "parallel with a veto": (_signing(after="gateway"), [
        ("sign", "alice", "approve"), ("sign", "carol", "reject"), ("sign", "dave", "approve")]),
    "sequential into an end": (_signing(sequential=True), [
        ("sign", "alice", "approve"), ("sign", "carol", "approve"), ("sign", "dave", "approve")]),
    "sequential into a gateway": (_signing(sequential=True, after="gateway"), [
        ("sign", "alice", "approve"), ("sign", "carol", "approve"), ("sign", "dave", "approve"),
        ("pay", None, "approve")]),
    # The counters of a completion condition count the collection's signers.
    "completion on the counters": (_signing(completion="nrOfInstances == 3 && nrOfCompletedInstances >= 2"), [
        ("sign", "alice", "approve"), ("sign", "dave", "approve")]),
    "sequential with a completion": (_signing(sequential=True, completion="nrOfCompletedInstances >= 2"), [
        ("sign", "alice", "approve"), ("sign", "carol", "approve")]),
    "in a sub-process": (NESTED, [
        ("sign", "dave", "approve"), ("sign", "alice", "approve"), ("sign", "carol", "approve"),
        ("pay", None, "approve")]),
}


def _ready(workflow):
    return sorted((runtime.node_key(t), runtime.variables_of(t).get("signer") if runtime.node_key(t) == "sign"
                   else None) for t in runtime.ready_user_tasks(workflow))


def _run(bpmn, steps, new_process_each_step):
    """The trace of a scenario: what is ready after each step, whether the workflow ended, its variables."""
    text = bpmn.decode("utf-8")
    runtime.specs.cache_clear()
    workflow = runtime.new_workflow(text, {"signers": list(SIGNERS)})
    trace = [_ready(workflow)]
    for key, signer, action in steps:
        if new_process_each_step:
            state = runtime.dump(workflow)
            runtime.specs.cache_clear()
            workflow = runtime.restore(text, state)
        task = next(t for t in runtime.ready_user_tasks(workflow) if runtime.node_key(t) == key
                    and (signer is None or runtime.variables_of(t).get("signer") == signer))
        runtime.complete(workflow, str(task.id), action, {})
        trace.append(_ready(workflow))
    return trace, workflow.is_completed(), workflow.last_task.data if workflow.is_completed() else None


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_a_countersign_goes_on_the_same_in_a_new_process(name):
    bpmn, steps = SCENARIOS[name]
    in_memory = _run(bpmn, steps, new_process_each_step=False)
    restored = _run(bpmn, steps, new_process_each_step=True)
    assert restored == in_memory
    trace, completed, data = restored
    assert completed, trace
    assert data["signers"] == SIGNERS  # the collection is read, never extended by the signers
    assert data["action"] == ("reject" if name == "parallel with a veto" else "approve")
