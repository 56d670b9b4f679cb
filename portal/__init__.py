"""The batch approval portal: ``create_app`` builds the Flask application."""
import os

from flask import Flask
from werkzeug.middleware.proxy_fix import ProxyFix

from config import Config


def create_app(overrides=None):
    app = Flask(__name__, instance_relative_config=True,
                instance_path=os.environ.get("PORTAL_INSTANCE_PATH") or None,
                template_folder="../templates", static_folder="../static")
    os.makedirs(app.instance_path, exist_ok=True)
    app.config.update(Config.from_env(app.instance_path))
    if overrides:
        app.config.update(overrides)
    _configure_rate_limit_storage(app)
    _trust_proxy_headers(app)

    from portal.infra import logs
    logs.init_app(app)  # first: whatever logs while the app is built goes through it

    from portal.infra import extensions, queueing
    extensions.init_app(app)
    queueing.install_session_hooks()  # jobs asked for in a transaction go to RQ once it commits

    from portal.infra import auth_loader, security
    auth_loader.init_app(app)
    security.init_app(app)

    from portal.web import args, register_blueprints
    args.init_app(app)  # before any route: <int:id> means a row id
    register_blueprints(app)

    from portal.api import bp as api_bp
    app.register_blueprint(api_bp)

    from portal.infra import admin_rq, metrics
    metrics.init_app(app)  # /metrics and the counters' receivers
    admin_rq.init_app(app)  # RQ's dashboard at /admin/rq

    import portal.jobs  # noqa: F401 - declares every background job, which services name

    from portal.cli import register_cli
    register_cli(app)
    return app


def _trust_proxy_headers(app):
    """Behind a reverse proxy, take the client's address and scheme from the
    X-Forwarded-* headers of as many proxies as configured (none by default:
    without a proxy a client could forge them). Login rate limits then count
    per client, and ``request.is_secure`` is true behind an HTTPS proxy."""
    x_for, x_proto, x_host = (app.config.get(name, 0) for name in (
        "PROXY_FIX_X_FOR", "PROXY_FIX_X_PROTO", "PROXY_FIX_X_HOST"))
    if x_for or x_proto or x_host:
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=x_for, x_proto=x_proto, x_host=x_host)


def _configure_rate_limit_storage(app):
    """Share login rate limits through Redis when several web processes may run."""
    if app.config.get("RATELIMIT_STORAGE_URI"):
        return
    url = app.config.get("REDIS_URL")
    if not url:
        app.config["RATELIMIT_STORAGE_URI"] = "memory://"
    elif url.startswith("unix://"):
        app.config["RATELIMIT_STORAGE_URI"] = "redis+unix://" + url[len("unix://"):]
    else:
        app.config["RATELIMIT_STORAGE_URI"] = url
