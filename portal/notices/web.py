"""Pages of the notices: the list (``/notices``), opening a notice, marking notices read, and the
user's channels and webhook URLs with the delivery log (``/account/notices``).

Only the user's own notices and endpoints are ever loaded; anyone else's answer 404 like missing
ones. Every change is a POST with a CSRF token, except opening a notice: a link that marks the
notice read on its way to the batch, as opening a message does (at worst a page elsewhere could mark
a notice read).
"""
import logging

from flask import (Blueprint, abort, current_app, flash, make_response, redirect, render_template,
                   request, url_for)
from flask_babel import gettext as _, lazy_gettext as _l, ngettext
from flask_login import current_user, login_required
from flask_wtf import FlaskForm
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import selectinload
from wtforms import BooleanField, SelectField, StringField
from wtforms.validators import Length, Optional

from portal.errors import ValidationFailed
from portal.infra.extensions import db
from portal.infra.paging import keyset_page
from portal.models import Batch, BatchItem, Node, Notice, NoticeDelivery, NoticeDeliveryAttempt
from portal.notices import preferences, records, texts
from portal.web.args import id_arg

log = logging.getLogger(__name__)
bp = Blueprint("notices", __name__)

PAGE_SIZE = 25
LOG_SIZE = 20
DELIVERY_LABELS = {"delivered": _l("Delivered"), "error": _l("Failed")}
CHANNEL_LABELS = {"email": _l("E-mail"), "webhook": _l("Webhook")}


class PreferenceForm(FlaskForm):
    email_enabled = BooleanField(_l("E-mail me when my batches finish or need me"))
    email_address = StringField(_l("E-mail address"), validators=[
        Optional(), Length(max=preferences.MAX_EMAIL_LENGTH)],
        render_kw={"autocomplete": "email", "type": "email"})
    webhook_enabled = BooleanField(_l("Post to my webhook URLs"))


class WebhookForm(FlaskForm):
    url = StringField(_l("URL"), validators=[Length(max=preferences.MAX_URL_LENGTH)],
                      render_kw={"type": "url", "placeholder": "https://"},
                      description=_l("http or https; each notice is posted as JSON, signed with "
                                     "the secret shown once below."))
    token_id = SelectField(_l("For"), choices=[], validate_choice=False)


def unread_count():
    """The navbar badge: the current user's unread notices (0 for a visitor). Every page of a
    logged-in user shows it, error pages included: a database that fails here shows no badge
    rather than no page."""
    if not getattr(current_user, "is_authenticated", False):
        return 0
    try:
        return records.unread_count(current_user)
    except SQLAlchemyError:
        log.exception("could not count the unread notices")
        return 0


# --- the list ------------------------------------------------------------------------------

@bp.route("/notices")
@login_required
def index():
    page = keyset_page(records.notices_query(current_user), Notice.id, limit=PAGE_SIZE,
                       after=id_arg("after"), before=id_arg("before"), descending=True)
    batch_ids = {notice.batch_id for notice in page.rows}
    batches = {batch.id: batch for batch in db.session.execute(
        db.select(Batch).where(Batch.id.in_(batch_ids))
        .options(selectinload(Batch.node).selectinload(Node.process))).scalars()} if batch_ids else {}
    item_ids = {notice.item_id for notice in page.rows if notice.item_id}
    task_ids = dict(db.session.execute(
        db.select(BatchItem.id, BatchItem.task_id).where(BatchItem.id.in_(item_ids))).all()
    ) if item_ids else {}
    return render_template("notices/index.html", page=page, batches=batches, task_ids=task_ids,
                           unread=records.unread_count(current_user), texts=texts,
                           cursor=_cursor_args())


def _own_notice_or_404(notice_id):
    notice = records.own_notice(current_user, notice_id)
    if notice is None:
        abort(404)
    return notice


@bp.route("/notices/<int:notice_id>/open")
@login_required
def open_notice(notice_id):
    notice = _own_notice_or_404(notice_id)
    records.mark_read(notice)
    db.session.commit()
    endpoint, values = texts.notice_target(notice.batch_id, notice.item_id)
    return redirect(url_for(endpoint, **values))


def _cursor_args(values=None):
    """The list page's cursor (``after`` / ``before``), to come back to the same page."""
    return {name: value for name in ("after", "before")
            if (value := id_arg(name, values)) is not None}


def _back_to_list():
    """The list page the form was on, else the first page."""
    return redirect(url_for("notices.index", **_cursor_args(request.form)))


@bp.route("/notices/<int:notice_id>/read", methods=["POST"])
@login_required
def mark_read(notice_id):
    records.mark_read(_own_notice_or_404(notice_id))
    db.session.commit()
    return _back_to_list()


@bp.route("/notices/read-all", methods=["POST"])
@login_required
def mark_all_read():
    count = records.mark_all_read(current_user)
    db.session.commit()
    flash(ngettext("%(num)s notice marked read.", "%(num)s notices marked read.", count), "success")
    return _back_to_list()


# --- channels and webhooks -------------------------------------------------------------------

def _token_choices():
    choices = [("", _("Every notice of mine"))]
    for token in preferences.active_tokens(current_user):
        label = token.name or _("API token %(id)s", id=token.id)
        choices.append((str(token.id), _("While API token \"%(name)s\" is active", name=label)))
    return choices


def _delivery_log(user):
    """The user's last delivery attempts, newest first, with their delivery and notice."""
    return db.session.execute(
        db.select(NoticeDeliveryAttempt, NoticeDelivery, Notice, Batch.number)
        .join(NoticeDelivery, NoticeDeliveryAttempt.delivery_id == NoticeDelivery.id)
        .join(Notice, NoticeDelivery.notice_id == Notice.id)
        .join(Batch, Notice.batch_id == Batch.id)
        .where(Notice.user_id == user.id)
        .order_by(NoticeDeliveryAttempt.id.desc()).limit(LOG_SIZE)).all()


def _waiting_deliveries(user):
    """The user's deliveries that wait for an attempt, oldest first."""
    return db.session.execute(
        db.select(NoticeDelivery, Notice, Batch.number)
        .join(Notice, NoticeDelivery.notice_id == Notice.id)
        .join(Batch, Notice.batch_id == Batch.id)
        .where(Notice.user_id == user.id, NoticeDelivery.status == "pending")
        .order_by(NoticeDelivery.id).limit(LOG_SIZE)).all()


def _settings_page(preference_form=None, webhook_form=None, new_endpoint=None, rotated=False,
                   status=200):
    preference = preferences.preference_of(current_user.id)
    if preference_form is None:
        preference_form = PreferenceForm(formdata=None, obj=preference)
    if webhook_form is None:
        webhook_form = WebhookForm(formdata=None)
    webhook_form.token_id.choices = _token_choices()
    return render_template(
        "account/notices.html", preference_form=preference_form, webhook_form=webhook_form,
        endpoints=preferences.endpoints_of(current_user), new_endpoint=new_endpoint,
        rotated=rotated,
        log=_delivery_log(current_user), waiting=_waiting_deliveries(current_user),
        mail_configured=bool(current_app.config.get("MAIL_SERVER")), texts=texts,
        delivery_labels=DELIVERY_LABELS,
        channel_labels=CHANNEL_LABELS), status


@bp.route("/account/notices")
@login_required
def settings():
    return _settings_page()


@bp.route("/account/notices/channels", methods=["POST"])
@login_required
def save_channels():
    form = PreferenceForm()
    if form.validate_on_submit():
        try:
            preferences.save_preference(current_user, form.email_enabled.data,
                                        form.email_address.data, form.webhook_enabled.data)
        except ValidationFailed as exc:
            _refused(form, exc)
        else:
            db.session.commit()
            flash(_("Your notice settings were saved."), "success")
            return redirect(url_for("notices.settings"))
    return _settings_page(preference_form=form, status=400)


def _refused(form, exc):
    """A refused save changes nothing and shows each message next to its field."""
    db.session.rollback()
    for name, message in exc.errors.items():
        form[name].errors.append(message)


@bp.route("/account/notices/webhooks", methods=["POST"])
@login_required
def add_webhook():
    form = WebhookForm()
    form.token_id.choices = _token_choices()
    if form.validate_on_submit():
        token_id = id_arg("token_id", request.form)
        try:
            endpoint = preferences.add_endpoint(current_user, form.url.data, token_id)
        except ValidationFailed as exc:
            _refused(form, exc)
        else:
            db.session.commit()
            return _secret_page(endpoint)
    return _settings_page(webhook_form=form, status=400)


def _secret_page(endpoint, rotated=False):
    """The settings page showing the endpoint's secret: on this answer only, which no browser or
    proxy may keep (it is not in any later page)."""
    response = make_response(_settings_page(new_endpoint=endpoint, rotated=rotated))
    response.headers["Cache-Control"] = "no-store"
    return response


@bp.route("/account/notices/webhooks/<int:endpoint_id>/secret", methods=["POST"])
@login_required
def rotate_secret(endpoint_id):
    endpoint = preferences.rotate_secret(current_user, endpoint_id)
    db.session.commit()
    return _secret_page(endpoint, rotated=True)


@bp.route("/account/notices/webhooks/<int:endpoint_id>/remove", methods=["POST"])
@login_required
def remove_webhook(endpoint_id):
    endpoint = preferences.remove_endpoint(current_user, endpoint_id)
    db.session.commit()
    flash(_("Notices are no longer posted to %(url)s.", url=endpoint.url), "success")
    return redirect(url_for("notices.settings"))

