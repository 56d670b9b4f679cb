"""E-mail deliveries: a plain-text message in the batch creator's language, sent with smtplib.

Sent only when ``MAIL_SERVER`` is set, from ``MAIL_SENDER``, with STARTTLS when ``MAIL_USE_TLS``
and a login when ``MAIL_USERNAME`` is set. The text is composed once (first attempt) under the
creator's locale, so every retry sends the same message; its Message-ID is fixed per delivery, so
a repeat after a lost acknowledgement reads as the same message in mail clients.
"""
import json
import smtplib
import ssl
import time
from email.message import EmailMessage
from email.utils import formatdate

from flask import current_app
from flask_babel import force_locale, gettext as _

from portal.infra.extensions import db
from portal.models import BatchItem
from portal.notices import texts
from portal.notices.attempt import Outcome

SMTP_TIMEOUT_SECONDS = 30


def _locale_of(user):
    languages = current_app.config["LANGUAGES"]
    locale = user.locale if user is not None else None
    return locale if locale in languages else current_app.config["BABEL_DEFAULT_LOCALE"]


def _step_name(batch):
    node = batch.node
    return f"{node.process.name} · {node.name}" if node is not None else ""


def compose(notice, batch, user):
    """{"subject", "text"} as JSON text, in the user's language."""
    task_id = None
    if notice.item_id:
        task_id = db.session.execute(
            db.select(BatchItem.task_id).where(BatchItem.id == notice.item_id)).scalar()
    with force_locale(_locale_of(user)):
        subject = texts.summary(notice.kind, batch.number, task_id)
        endpoint, values = texts.notice_target(batch.id, notice.item_id)
        lines = [
            subject, "",
            f"{_('Status')}: {texts.kind_label(notice.kind)}",
            f"{_('Step')}: {_step_name(batch)}",
            f"{_('Total')}: {batch.total} · {_('Success')}: {batch.success} · "
            f"{_('Failed')}: {batch.failed} · {_('Ignored')}: {batch.ignored + batch.cancelled}",
            "",
            f"{_('Open it here')}: {texts.external_url(endpoint, **values)}",
            "",
            "-- ",
            _("You get these e-mails because you chose them. Change that here: %(url)s",
              url=texts.external_url("notices.settings")),
        ]
    return json.dumps({"subject": subject, "text": "\n".join(lines) + "\n"}, ensure_ascii=False)


def _message(claimed):
    content = json.loads(claimed.body)
    sender = current_app.config["MAIL_SENDER"]
    message = EmailMessage()
    message["Subject"] = content["subject"]
    message["From"] = sender
    message["To"] = claimed.target
    message["Date"] = formatdate(usegmt=True)
    domain = sender.rpartition("@")[2] or "localhost"
    message["Message-ID"] = f"<notice-delivery-{claimed.delivery_id}@{domain}>"
    message["Auto-Submitted"] = "auto-generated"
    message.set_content(content["text"])
    return message


def send(claimed):
    """Hand the message to the SMTP server once; an Outcome."""
    config = current_app.config
    started = time.monotonic()
    try:
        with smtplib.SMTP(config["MAIL_SERVER"], config["MAIL_PORT"],
                          timeout=SMTP_TIMEOUT_SECONDS) as smtp:
            if config["MAIL_USE_TLS"]:
                smtp.starttls(context=ssl.create_default_context())
            if config["MAIL_USERNAME"]:
                smtp.login(config["MAIL_USERNAME"], config["MAIL_PASSWORD"])
            smtp.send_message(_message(claimed))
    except (smtplib.SMTPException, OSError) as exc:
        code = getattr(exc, "smtp_code", None)
        return Outcome(False, code if isinstance(code, int) else None,
                       f"{type(exc).__name__}: {exc}", _ms_since(started))
    return Outcome(True, 250, None, _ms_since(started))


def _ms_since(started):
    return int((time.monotonic() - started) * 1000)
