"""Batch approve from My tasks, the batches list and the batch page."""
from flask import Blueprint

bp = Blueprint("batches", __name__)
