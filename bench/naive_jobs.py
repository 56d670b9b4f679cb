"""The baseline a user would otherwise build: one plain RQ job per task."""
from portal.infra.extensions import db
from portal.models import User
from portal.workflow.engine import decide


def approve_one(task_id, user_id, form):
    user = db.session.get(User, user_id)
    decide(task_id, user, "approve", "bench", form)
    db.session.commit()
