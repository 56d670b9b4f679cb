"""The running engine: process instances on SpiffWorkflow, moved on by people's decisions.

What pages, the API, batches and the CLI call is importable from here (``from portal.workflow import engine``;
``engine.decide(...)``); it is written in ``actions``. The rest are the engine's parts:

- ``actions``: start, take, approve/reject, countersign, sign, recall, suspend and resume;
- ``runtime``: SpiffWorkflow behind a few functions (the engine's state in, its ready user tasks out);
- ``sync``: the engine's ready user tasks written as Task rows;
- ``versions``: what an engine step reads of a process version, cached per process;
- ``multi_instance``: the cap on a 会签 collection;
- ``repair``: running instances that wait on nothing, run on from their stored state.

The engine reads process versions as the loader stored them (``portal.workflow.store``, the ``Node`` rows);
the loader (``portal.workflow.loading``) never imports the engine. Conditions are compiled and evaluated by
``portal.workflow.expressions``, which both share.
"""
from portal.workflow.engine.actions import (
    ACTIONS, MAX_COMMENT, check_decision, countersign, decide, lock_instance, pending_rows, recall,
    recall_refusal, recallable_task, release_task, set_suspended, sign, start_instance, take_task,
    validate_decision)

__all__ = ["ACTIONS", "MAX_COMMENT", "check_decision", "countersign", "decide", "lock_instance", "pending_rows",
           "recall", "recall_refusal", "recallable_task", "release_task", "set_suspended", "sign",
           "start_instance", "take_task", "validate_decision"]
