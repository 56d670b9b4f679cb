"""My tasks, the task page (approve, reject, countersign, sign, recall) and the instance page."""
from flask import Blueprint

bp = Blueprint("tasks", __name__)
