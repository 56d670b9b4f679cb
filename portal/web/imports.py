"""Excel templates, uploads with a preview, and error workbooks."""
from flask import Blueprint

bp = Blueprint("imports", __name__)
