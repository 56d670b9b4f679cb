"""Forms of the server-rendered pages.

Fixed forms (login, decision, countersign, admin) are Flask-WTF classes. A
node's own fields come from its process definition, so ``build_node_form``
turns those field definitions into a WTForms form at request time: it renders
the inputs and reads the posted values back into the plain dict that
``portal.workflow.engine.decide`` validates. The engine stays the one place
that judges a form; these classes only render and collect.
"""
from flask_babel import lazy_gettext as _l
from flask_wtf import FlaskForm
from flask_wtf.file import FileField, FileRequired
from wtforms import (BooleanField, FieldList, FormField, PasswordField, SelectField,
                     StringField, TextAreaField)
from wtforms.form import BaseForm
from wtforms.validators import DataRequired, EqualTo, Length, ValidationError
from wtforms.widgets import DateInput, NumberInput

from portal.accounts import MIN_PASSWORD_LENGTH, username_problem
from portal.models.users import ROLES
from portal.workflow.engine import MAX_COMMENT

ROLE_LABELS = {"user": _l("User"), "supervisor": _l("Supervisor"), "admin": _l("Administrator")}


# --- fixed forms ----------------------------------------------------------------------

class LoginForm(FlaskForm):
    username = StringField(_l("User name"), validators=[DataRequired(), Length(max=80)],
                           render_kw={"autocomplete": "username", "autofocus": True})
    password = PasswordField(_l("Password"), validators=[DataRequired()],
                             render_kw={"autocomplete": "current-password"})


def _new_password_validators():
    return [DataRequired(), Length(min=MIN_PASSWORD_LENGTH, message=_l("At least 8 characters."))]


class PasswordChangeForm(FlaskForm):
    """A user's own password: the current one first, the new one twice."""
    old_password = PasswordField(_l("Current password"), validators=[DataRequired()],
                                 render_kw={"autocomplete": "current-password"})
    new_password = PasswordField(_l("New password"), validators=_new_password_validators(),
                                 render_kw={"autocomplete": "new-password"})
    confirm = PasswordField(_l("New password again"), validators=[
        DataRequired(), EqualTo("new_password", message=_l("The two new passwords differ."))],
        render_kw={"autocomplete": "new-password"})


class PasswordResetForm(FlaskForm):
    """An administrator sets someone's password."""
    password = PasswordField(_l("New password"), validators=_new_password_validators(),
                             render_kw={"autocomplete": "new-password"})


class DecisionForm(FlaskForm):
    """Comment and the pressed button (``action``) of the approve/reject form."""
    comment = TextAreaField(_l("Comment"), render_kw={"maxlength": MAX_COMMENT, "rows": 3})
    action = StringField()


class CountersignForm(FlaskForm):
    signer = StringField(_l("User name of the signer"), validators=[DataRequired()])
    comment = TextAreaField(_l("Comment"), render_kw={"maxlength": MAX_COMMENT, "rows": 2})


class SignForm(FlaskForm):
    comment = TextAreaField(_l("Comment"), render_kw={"maxlength": MAX_COMMENT, "rows": 2})


class ProcessUploadForm(FlaskForm):
    file = FileField(_l("Process file (BPMN 2.0 or JSON)"),
                     validators=[FileRequired(_l("Choose a .bpmn or .json file."))],
                     render_kw={"accept": ".bpmn,.xml,.json,application/json"})


def _role_choices():
    return [(role, ROLE_LABELS[role]) for role in ROLES]


def _clean_roles(text):
    return " ".join((text or "").split())


class UserCreateForm(FlaskForm):
    username = StringField(_l("User name"), validators=[DataRequired(), Length(max=80)])
    role = SelectField(_l("Role"), choices=_role_choices, default="user")
    workflow_roles = StringField(_l("Workflow roles"), filters=[_clean_roles],
                                 validators=[Length(max=255)],
                                 description=_l("Space separated, e.g. finance"))
    password = PasswordField(_l("Password"), validators=[
        DataRequired(), Length(min=8, message=_l("At least 8 characters."))])

    def validate_username(self, field):
        # The CLI's rule: letters, digits, dot, dash, underscore; no name equal to an existing one
        # after case folding and NFKC.
        problem = username_problem(field.data.strip())
        if problem is not None:
            raise ValidationError(problem)


class UserEditForm(FlaskForm):
    role = SelectField(_l("Role"), choices=_role_choices)
    workflow_roles = StringField(_l("Workflow roles"), filters=[_clean_roles],
                                 validators=[Length(max=255)])


# --- a node's form, built from its field definitions ------------------------------------

BOOLEAN_CHOICES = [("", "—"), ("true", _l("Yes")), ("false", _l("No"))]


def _unbound_field(definition, in_table=False):
    """The WTForms field for one field definition (contract (docs/contract.md) section 5)."""
    kind = definition.get("type", "text")
    label = definition.get("label") or definition["key"]
    # Browsers check required top-level fields; the reject button opts out with
    # formnovalidate. Table cells are not marked: a spare blank row is allowed.
    attrs = {"required": True} if definition.get("required") and not in_table else {}
    if kind == "number":
        return StringField(label, render_kw=attrs, widget=NumberInput(
            step="any", min=definition.get("min"), max=definition.get("max")))
    if kind == "date":
        return StringField(label, render_kw=attrs, widget=DateInput())
    if kind == "select":
        choices = [("", "—")] + [(str(o), str(o)) for o in definition.get("options", [])]
        return SelectField(label, choices=choices, validate_choice=False, render_kw=attrs)
    if kind == "boolean":
        if definition.get("required") and not in_table:
            return SelectField(label, choices=BOOLEAN_CHOICES, validate_choice=False,
                               render_kw=attrs)
        return BooleanField(label)
    if kind == "table":
        return FieldList(FormField(_row_form_class(definition.get("columns", []))),
                         label=label, min_entries=1)
    if definition.get("max_length"):
        attrs["maxlength"] = definition["max_length"]
    return StringField(label, render_kw=attrs)


def _row_form_class(columns):
    """A form class for one row of a table field (names like ``lines-0-item``)."""
    pairs = [(column["key"], _unbound_field(column, in_table=True)) for column in columns]

    class RowForm(BaseForm):
        def __init__(self, formdata=None, obj=None, prefix="", meta=None, **data):
            super().__init__(pairs, prefix=prefix)
            self.process(formdata, obj, data=data)

    return RowForm


def _initial_value(definition, value):
    """Stored values (JSON) as the inputs expect them."""
    kind = definition.get("type", "text")
    if kind == "boolean" and definition.get("required") and isinstance(value, bool):
        return "true" if value else "false"
    if kind == "table" and isinstance(value, list):
        columns = definition.get("columns", [])
        return [{c["key"]: _initial_value(c, row.get(c["key"])) for c in columns}
                for row in value if isinstance(row, dict)]
    return value


def build_node_form(fields, formdata=None, data=None):
    """A bound form for ``fields`` (a node's field definitions).

    ``formdata`` is the posted MultiDict; without it the inputs show ``data``
    (a dict of stored values keyed by field key).
    """
    form = BaseForm([(f["key"], _unbound_field(f)) for f in fields])
    initial = {f["key"]: _initial_value(f, (data or {}).get(f["key"]))
               for f in fields if (data or {}).get(f["key"]) is not None}
    form.process(formdata or None, data=initial)
    return form


def _blank(value):
    return value is None or value is False or (isinstance(value, str) and not value.strip())


def _posted_value(definition, field):
    kind = definition.get("type", "text")
    if kind == "table":
        columns = definition.get("columns", [])
        rows = [{c["key"]: _posted_value(c, entry.form[c["key"]]) for c in columns}
                for entry in field.entries]
        return [row for row in rows if not all(_blank(v) for v in row.values())]
    return field.data


def node_form_values(form, fields):
    """The posted values as the engine takes them: {field key: value}."""
    return {f["key"]: _posted_value(f, form[f["key"]]) for f in fields}
