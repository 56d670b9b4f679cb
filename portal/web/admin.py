"""Admin pages: process definitions, users, instances (suspend/resume) and health."""
from flask import Blueprint

bp = Blueprint("admin", __name__, url_prefix="/admin")
