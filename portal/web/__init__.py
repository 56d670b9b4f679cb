"""Server-rendered pages, one blueprint module per feature, and the HTML error pages."""
from flask import render_template, request
from flask_babel import get_locale, gettext as _, lazy_gettext as _l
from flask_wtf.csrf import CSRFError

ERROR_MESSAGES = {
    400: _l("The request could not be understood."),
    403: _l("You may not do this."),
    404: _l("Not found."),
    405: _l("This action is not allowed here."),
    409: _l("The request conflicts with the current state."),
    413: _l("The upload is too large."),
    422: _l("The form has errors."),
    429: _l("Too many attempts. Please wait a minute and try again."),
    500: _l("Something went wrong on our side."),
}


def _own_description(exc):
    """The message a view gave its HTTP error, not the framework's English default."""
    description = getattr(exc, "description", None)
    return description if description and description != type(exc).description else None


def _attention_count():
    """The navbar badge of supervisors: batches that finished with failures lately."""
    from portal.batches.attention import failures_count
    return failures_count()


def _wants_json():
    return request.path.startswith("/api/")


def register_blueprints(app):
    from portal.web import admin, auth, batches, diagrams, imports, tasks
    for module in (auth, tasks, batches, imports, admin, diagrams):
        app.register_blueprint(module.bp)
    from portal import notices
    notices.init_app(app)

    @app.context_processor
    def _locale():
        def current_locale():
            locale = get_locale()
            return "zh_CN" if locale is not None and locale.language == "zh" else "en"
        return {"current_locale": current_locale,
                "attention_count": _attention_count}

    def _render_error(code, message=None):
        text = message or str(ERROR_MESSAGES.get(code) or _("Error"))
        if code == 413:
            text = _("The upload is larger than %(mb)s MB.", mb=app.config["MAX_UPLOAD_MB"])
        if _wants_json():
            return {"error": text}, code
        return render_template("errors/error.html", code=code, message=text), code

    for code in ERROR_MESSAGES:
        app.register_error_handler(code, lambda exc, code=code: _render_error(
            code, _own_description(exc) if code not in (404, 405, 413, 500) else None))

    from portal.web import errors
    errors.init_app(app, _render_error)

    @app.errorhandler(CSRFError)
    def _csrf_error(exc):
        return _render_error(400, _("The form expired or was sent from elsewhere. Please try again."))
