"""WSGI entry point and FLASK_APP target: ``flask --app app ...``."""
from portal import create_app

app = create_app()
