"""Configuration read from environment variables (see contract (docs/contract.md) section 2).

Nothing happens at import time: ``Config.from_env`` is called by ``create_app``
with the instance folder, which is where defaults that need a path live.
"""
import os
import secrets


def _int_env(name, default):
    value = os.environ.get(name)
    return int(value) if value not in (None, "") else default


def _bool_env(name):
    """1/true/yes/on (any case) is true; unset, empty and anything else false."""
    return (os.environ.get(name) or "").strip().lower() in ("1", "true", "yes", "on")


def _networks_env(name):
    """A list of CIDRs (comma or space separated), kept as written once each one is checked."""
    from portal.notices.addresses import parse_networks
    value = (os.environ.get(name) or "").strip()
    try:
        parse_networks(value)
    except ValueError as exc:
        raise ValueError(f"{name}: {exc}") from None
    return value


def normalize_database_url(url):
    """Accept plain ``postgresql://`` URLs and route them to psycopg 3."""
    if url.startswith("postgres://"):
        url = "postgresql://" + url[len("postgres://"):]
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url[len("postgresql://"):]
    return url


def _secret_key(instance_path):
    """Use SECRET_KEY, else a key generated once into the instance folder."""
    if os.environ.get("SECRET_KEY"):
        return os.environ["SECRET_KEY"]
    path = os.path.join(instance_path, "secret_key")
    if not os.path.exists(path):
        os.makedirs(instance_path, exist_ok=True)
        with open(path, "w") as fh:
            fh.write(secrets.token_hex(32))
        os.chmod(path, 0o600)
    with open(path) as fh:
        return fh.read().strip()


class Config:
    """Settings shared by every process (web, workers, scheduler, CLI)."""

    SQLALCHEMY_TRACK_MODIFICATIONS = False
    SESSION_COOKIE_HTTPONLY = True
    SESSION_COOKIE_SAMESITE = "Lax"
    REMEMBER_COOKIE_HTTPONLY = True
    REMEMBER_COOKIE_SAMESITE = "Lax"
    WTF_CSRF_TIME_LIMIT = None
    BABEL_DEFAULT_LOCALE = "en"
    LANGUAGES = ("en", "zh_CN")
    # Login attempts per client address, and per submitted user name whatever
    # the address (behind a proxy, or from many machines).
    LOGIN_RATE_LIMIT = "10 per minute"
    LOGIN_ACCOUNT_RATE_LIMIT = "5 per minute; 30 per hour"
    # A login session unused this long ends (0: only logout, a password change
    # or disabling ends it); its last use is written at most this often.
    SESSION_IDLE_HOURS = 12
    SESSION_TOUCH_SECONDS = 60
    PASSWORD_HASH_METHOD = "scrypt"
    TASK_LOCK_MINUTES = 15
    # How long a worker may hold an item before another may reclaim it.
    BATCH_LEASE_SECONDS = 120
    # A batch job works in slices this long; after each it requeues itself at the
    # back of the queue if other jobs wait (fairness between batches)...
    BATCH_SLICE_SECONDS = 1.0
    # ...else it goes on with another slice, for this long at most.
    BATCH_LANE_MAX_SECONDS = 30
    QUEUE_NAME = "portal"
    # Notice deliveries wait on a queue of their own: a slow receiver never holds batch work.
    DELIVERY_QUEUE_NAME = "portal-deliveries"
    TESTING = False

    @classmethod
    def from_env(cls, instance_path):
        settings = {k: getattr(cls, k) for k in dir(cls) if k.isupper()}
        database_url = os.environ.get("DATABASE_URL") or (
            "sqlite:///" + os.path.join(instance_path, "portal.db"))
        max_upload_mb = _int_env("MAX_UPLOAD_MB", 20)
        recovery_interval = _int_env("RECOVERY_INTERVAL_SECONDS", 60)
        settings.update(
            SQLALCHEMY_DATABASE_URI=normalize_database_url(database_url),
            REDIS_URL=os.environ.get("REDIS_URL") or None,
            SECRET_KEY=_secret_key(instance_path),
            BATCH_CONCURRENCY=_int_env("BATCH_CONCURRENCY", 5),
            BATCH_RETRY_LIMIT=_int_env("BATCH_RETRY_LIMIT", 3),
            BATCH_STALL_SECONDS=_int_env("BATCH_STALL_SECONDS", 300),
            RECOVERY_INTERVAL_SECONDS=recovery_interval,
            # The notice sweep's own interval (a periodic job of its own): recovery's beat.
            NOTICE_SWEEP_INTERVAL_SECONDS=recovery_interval,
            BATCH_LEASE_SECONDS=_int_env("BATCH_LEASE_SECONDS", cls.BATCH_LEASE_SECONDS),
            MAX_UPLOAD_MB=max_upload_mb,
            MAX_CONTENT_LENGTH=max_upload_mb * 1024 * 1024,
            MAX_IMPORT_ROWS=_int_env("MAX_IMPORT_ROWS", 50000),
            # The most elements of a multi-instance (会签) collection: one task each.
            MAX_MULTI_INSTANCE=_int_env("MAX_MULTI_INSTANCE", 200),
            # An upload is read in a child process limited to this much memory and time.
            EXCEL_READER_MEMORY_MB=_int_env("EXCEL_READER_MEMORY_MB", 512),
            EXCEL_READER_SECONDS=_int_env("EXCEL_READER_SECONDS", 60),
            LOGIN_RATE_LIMIT=os.environ.get("LOGIN_RATE_LIMIT") or cls.LOGIN_RATE_LIMIT,
            LOGIN_ACCOUNT_RATE_LIMIT=(os.environ.get("LOGIN_ACCOUNT_RATE_LIMIT")
                                      or cls.LOGIN_ACCOUNT_RATE_LIMIT),
            SESSION_IDLE_HOURS=_int_env("SESSION_IDLE_HOURS", cls.SESSION_IDLE_HOURS),
            # Served over HTTPS: cookies are never sent over plain HTTP.
            SESSION_COOKIE_SECURE=_bool_env("SESSION_COOKIE_SECURE"),
            REMEMBER_COOKIE_SECURE=_bool_env("SESSION_COOKIE_SECURE"),
            # Behind a reverse proxy: how many proxies' X-Forwarded-* headers to
            # trust (0 = none, the default: a client could forge them).
            PROXY_FIX_X_FOR=_int_env("PROXY_FIX_X_FOR", 0),
            PROXY_FIX_X_PROTO=_int_env("PROXY_FIX_X_PROTO", 0),
            PROXY_FIX_X_HOST=_int_env("PROXY_FIX_X_HOST", 0),
            # /metrics: served to a request bearing this token, or from one of these addresses
            # (comma separated; empty token and list: loopback only).
            METRICS_TOKEN=os.environ.get("METRICS_TOKEN") or "",
            METRICS_ALLOWED_ADDRESSES=os.environ.get("METRICS_ALLOWED_ADDRESSES", "127.0.0.1,::1"),
            # Log lines: "text" for people, "json" for a log collector (one object per line).
            LOG_FORMAT=os.environ.get("LOG_FORMAT") or "text",
            # Completion e-mails: sent when MAIL_SERVER is set.
            MAIL_SERVER=os.environ.get("MAIL_SERVER") or "",
            MAIL_PORT=_int_env("MAIL_PORT", 25),
            MAIL_USERNAME=os.environ.get("MAIL_USERNAME") or "",
            MAIL_PASSWORD=os.environ.get("MAIL_PASSWORD") or "",
            MAIL_USE_TLS=_bool_env("MAIL_USE_TLS"),
            MAIL_SENDER=os.environ.get("MAIL_SENDER") or "portal@localhost",
            # The portal's address as people reach it, for links in e-mails (e.g. https://portal.example.com).
            PORTAL_URL=os.environ.get("PORTAL_URL") or "",
            # The port ``make run`` serves on; e-mail links use it when PORTAL_URL (and SERVER_NAME) is unset.
            PORT=_int_env("PORT", 5000),
            # Webhooks: the time limit of one attempt, all of it (resolving, connecting, sending,
            # reading the answer), and how many attempts before a delivery is given up.
            WEBHOOK_TIMEOUT_SECONDS=_int_env("WEBHOOK_TIMEOUT_SECONDS", 10),
            WEBHOOK_MAX_ATTEMPTS=_int_env("WEBHOOK_MAX_ATTEMPTS", 5),
            # Networks webhooks may reach although they are not public (loopback, private,
            # link-local...): CIDRs, comma or space separated; empty, the default: none.
            WEBHOOK_ALLOWED_NETWORKS=_networks_env("WEBHOOK_ALLOWED_NETWORKS"),
        )
        return settings
