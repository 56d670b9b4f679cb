"""Server-rendered pages, one blueprint module per feature."""


def register_blueprints(app):
    pass
