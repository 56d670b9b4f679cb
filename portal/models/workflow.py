"""The workflow: versioned process definitions, their nodes, instances, tasks,
countersign requests and the approval history.

Every process runs on SpiffWorkflow: a definition holds its BPMN file (a JSON
definition is stored with the equivalent BPMN, ``portal.workflow.json_definitions.to_bpmn``),
an instance holds the engine's state, and a Task row stands for each user task
the engine has ready, so that lists, locks and batches stay indexed SQL.
"""
from datetime import datetime

from sqlalchemy import JSON, ForeignKey, Index, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from portal.infra.extensions import db
from portal.models.base import utcnow


class ProcessDefinition(db.Model):
    """One version of a process; loading a changed definition adds a version."""

    __tablename__ = "process_definition"
    __table_args__ = (UniqueConstraint("key", "version", name="uq_process_definition_key_version"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    key: Mapped[str] = mapped_column(String(80), index=True)
    name: Mapped[str] = mapped_column(String(200))
    version: Mapped[int]
    # What was loaded: "json" (contract section 5; ``definition`` holds the file) or "bpmn" (section 5b).
    source: Mapped[str] = mapped_column(String(10), default="json")
    definition: Mapped[dict] = mapped_column(JSON)
    bpmn: Mapped[str | None] = mapped_column(Text)  # the BPMN 2.0 file the engine runs
    digest: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    nodes = relationship("Node", order_by="Node.position", back_populates="process")

    @property
    def initiator(self):
        """The variable a BPMN start event sets to the starter's user name (camunda:initiator), if any."""
        return (self.definition or {}).get("initiator") if self.source == "bpmn" else None


class Node(db.Model):
    __tablename__ = "node"
    __table_args__ = (UniqueConstraint("process_id", "key", name="uq_node_process_key"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    process_id: Mapped[int] = mapped_column(ForeignKey("process_definition.id"))
    key: Mapped[str] = mapped_column(String(80))
    name: Mapped[str] = mapped_column(String(200))
    position: Mapped[int]
    # "user:NAME", "role:NAME", "var:VARIABLE" (the instance variable names the user) or "candidates"
    assignee: Mapped[str] = mapped_column(String(120))
    fields: Mapped[list] = mapped_column(JSON, default=list)
    # With assignee "candidates": anyone named here or holding one of these roles may act.
    candidate_users: Mapped[list | None] = mapped_column(JSON, default=list)
    candidate_groups: Mapped[list | None] = mapped_column(JSON, default=list)
    # 会签: {"collection", "element_variable", "sequential", "completion_condition"} or None.
    multi_instance: Mapped[dict | None] = mapped_column(JSON)
    # Whether the diagram routes a reject from here (a flow condition reads ``action``); if not,
    # a reject ends the instance as rejected.
    tests_action: Mapped[bool] = mapped_column(default=False)

    process = relationship(ProcessDefinition, back_populates="nodes")

    @property
    def form_fields(self):
        """Fields a shared form or a single-mode row can hold (no tables)."""
        return [f for f in self.fields if f.get("type") != "table"]


class Instance(db.Model):
    __tablename__ = "instance"

    id: Mapped[int] = mapped_column(primary_key=True)
    process_id: Mapped[int] = mapped_column(ForeignKey("process_definition.id"), index=True)
    title: Mapped[str] = mapped_column(String(300))
    data: Mapped[dict] = mapped_column(JSON, default=dict)
    status: Mapped[str] = mapped_column(String(20), default="running")  # running|approved|rejected
    # SpiffWorkflow's serialized workflow without its spec (portal.workflow.engine.runtime); None once finished
    # before the engine ran it.
    state: Mapped[str | None] = mapped_column(Text)
    suspended: Mapped[bool] = mapped_column(default=False)
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("user.id"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
    finished_at: Mapped[datetime | None]

    process = relationship(ProcessDefinition)
    tasks = relationship("Task", order_by="Task.id", back_populates="instance")


class Task(db.Model):
    """A task waits at one node for its assignee (a user, or anyone in a role).

    The lock (holder, expiry) is taken when someone opens or takes the task and
    by a batch for its items; a batch lock has no expiry and names the batch.
    """

    __tablename__ = "task"
    __table_args__ = (
        Index("ix_task_node_status", "node_id", "status"),
        Index("ix_task_user_status", "assignee_user_id", "status"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    instance_id: Mapped[int] = mapped_column(ForeignKey("instance.id"), index=True)
    node_id: Mapped[int] = mapped_column(ForeignKey("node.id"))
    assignee_user_id: Mapped[int | None] = mapped_column(ForeignKey("user.id"))
    assignee_role: Mapped[str | None] = mapped_column(String(80))
    # pending|done|recalled|cancelled (the engine withdrew it: a 会签 condition held, a terminate end event)
    status: Mapped[str] = mapped_column(String(20), default="pending")
    engine_task_id: Mapped[str | None] = mapped_column(String(36))  # the SpiffWorkflow task's UUID
    # The task whose decision opened this one (where a batch item went); None for a start or a recall.
    opened_by_id: Mapped[int | None] = mapped_column(index=True)
    outcome: Mapped[str | None] = mapped_column(String(20))  # approve|reject
    comment: Mapped[str | None] = mapped_column(Text)
    form: Mapped[dict | None] = mapped_column(JSON)
    lock_holder_id: Mapped[int | None] = mapped_column(ForeignKey("user.id"))
    lock_expires_at: Mapped[datetime | None]
    lock_batch_id: Mapped[int | None] = mapped_column(index=True)
    completed_by_id: Mapped[int | None] = mapped_column(ForeignKey("user.id"))
    completed_at: Mapped[datetime | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    instance = relationship(Instance, back_populates="tasks")
    node = relationship(Node)
    assignee_user = relationship("User", foreign_keys=[assignee_user_id])
    lock_holder = relationship("User", foreign_keys=[lock_holder_id])
    completed_by = relationship("User", foreign_keys=[completed_by_id])
    countersigns = relationship("Countersign", order_by="Countersign.id", back_populates="task")


class Countersign(db.Model):
    """加签: the task's holder asks another user to sign before it can be approved."""

    __tablename__ = "countersign"

    id: Mapped[int] = mapped_column(primary_key=True)
    task_id: Mapped[int] = mapped_column(ForeignKey("task.id"), index=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("user.id"), index=True)
    requested_by_id: Mapped[int] = mapped_column(ForeignKey("user.id"))
    status: Mapped[str] = mapped_column(String(20), default="pending")  # pending|signed
    comment: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    signed_at: Mapped[datetime | None]

    task = relationship(Task, back_populates="countersigns")
    user = relationship("User", foreign_keys=[user_id])
    requested_by = relationship("User", foreign_keys=[requested_by_id])


class History(db.Model):
    """What happened to an instance, one row per action, never updated."""

    __tablename__ = "history"

    id: Mapped[int] = mapped_column(primary_key=True)
    instance_id: Mapped[int] = mapped_column(ForeignKey("instance.id"), index=True)
    task_id: Mapped[int | None] = mapped_column(ForeignKey("task.id"), index=True)
    node_id: Mapped[int | None] = mapped_column(ForeignKey("node.id"))
    user_id: Mapped[int | None] = mapped_column(ForeignKey("user.id"))  # who decided
    # Whose decision it stands as, when someone decided for them: the creator of a batch whose
    # item another person corrected (``user_id``, the corrector); None otherwise.
    on_behalf_of_id: Mapped[int | None] = mapped_column(ForeignKey("user.id"))
    # start|approve|reject|countersign|sign|recall|suspend|resume
    action: Mapped[str] = mapped_column(String(20))
    comment: Mapped[str | None] = mapped_column(Text)
    form: Mapped[dict | None] = mapped_column(JSON)
    batch_item_id: Mapped[int | None] = mapped_column(index=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    instance = relationship(Instance)
    user = relationship("User", foreign_keys=[user_id])
    on_behalf_of = relationship("User", foreign_keys=[on_behalf_of_id])
    node = relationship(Node)
