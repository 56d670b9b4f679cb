"""A user task's generated form (``camunda:formData``) read into the portal's field dicts.

formField types string -> text, long -> number, double -> number, boolean, date, enum -> select (``options`` =
the ``camunda:value`` names; ``option_ids`` = their ids, only when some id differs from its name).
``camunda:validation`` constraints: required, readonly, min and max (number fields), minlength -> ``min_length``
and maxlength -> ``max_length`` (text fields). ``defaultValue`` is kept as text in ``default``. Any other type or
constraint is refused, naming the field.

Table fields (an extension Camunda Modeler can draw): a formField of type string with ``camunda:properties``
``portal:type`` = ``table`` and ``portal:columns`` = a JSON list of columns in the JSON file's column format, e.g.
``[{"key": "item", "label": "Item", "type": "text", "required": true}]``. Other ``portal:*`` properties are
refused; properties of other names are ignored (they are hints for other tools).

The fields then pass the field checks JSON files pass too (``portal.workflow.fields``), so both kinds of file
make the same fields. Problems go to ``reader.refuse`` (``portal.workflow.loading.checks.Reader``), keyed by the
user task.
"""
import json
import re
from decimal import Decimal, InvalidOperation

from flask_babel import gettext as _

from portal.workflow.fields import FIELD_TYPES, check_fields
from portal.workflow.loading.elements import CAMUNDA, describe, is_element, qualified, short, split_tag

FIELD_TYPE_MAP = {"string": "text", "long": "number", "double": "number", "boolean": "boolean",
                  "date": "date", "enum": "select"}
COLUMN_KEYS = {"key", "label", "type", "required", "options", "min", "max", "min_length", "max_length"}


def read_form(reader, task, form_data):
    """The field dicts of one ``camunda:formData`` element of ``task``."""
    fields = []
    for child in form_data:
        namespace, _local_name = split_tag(child.tag)
        if namespace is None:
            continue
        if not is_element(child, CAMUNDA, "formField"):
            reader.refuse(task, _("%(element)s: %(child)s is not supported in a form.",
                                  element=describe(task), child=qualified(child.tag)))
            continue
        converted = _form_field(reader, task, child)
        if converted is not None:
            fields.append(converted)
    _check_fields(reader, task, fields)
    return fields


def _refuse_field(reader, task, key, message):
    reader.refuse(task, _("%(element)s: form field %(field)s: %(problem)s",
                          element=describe(task), field=short(key), problem=message))


def _form_field(reader, task, xml_field):
    key = (xml_field.get("id") or "").strip()
    if not key:
        reader.refuse(task, _("%(element)s: a form field has no id.", element=describe(task)))
        return None
    kind = xml_field.get("type")
    if kind not in FIELD_TYPE_MAP:
        _refuse_field(reader, task, key, _("the type %(type)s is not supported (string, long, double, boolean, "
                                           "date or enum).", type=short(kind)))
        return None
    result = {"key": key}
    label = " ".join((xml_field.get("label") or "").split())
    if label:
        result["label"] = label
    result["type"] = FIELD_TYPE_MAP[kind]
    if xml_field.get("defaultValue") is not None:
        result["default"] = xml_field.get("defaultValue")
    options, properties = [], {}
    for child in xml_field:
        namespace, _local_name = split_tag(child.tag)
        if namespace is None:
            continue
        if is_element(child, CAMUNDA, "value") and kind == "enum":
            options.append((child.get("id") or "", child.get("name") or child.get("id") or ""))
        elif is_element(child, CAMUNDA, "properties"):
            for prop in child:
                if is_element(prop, CAMUNDA, "property"):
                    properties[prop.get("id") or prop.get("name") or ""] = prop.get("value") or ""
        elif is_element(child, CAMUNDA, "validation"):
            for constraint in child:
                if is_element(constraint, CAMUNDA, "constraint"):
                    _constraint(reader, task, key, result, constraint.get("name") or "",
                                constraint.get("config"))
        else:
            _refuse_field(reader, task, key, _("%(child)s is not supported.", child=qualified(child.tag)))
    if kind == "enum":
        result["options"] = [name for _ident, name in options]
        if any(ident != name for ident, name in options):
            result["option_ids"] = [ident for ident, _name in options]
        if len(set(result["options"])) != len(options):
            _refuse_field(reader, task, key, _("two values have the same name."))
    _table(reader, task, key, kind, result, properties)
    for low, high in (("min", "max"), ("min_length", "max_length")):
        if result.get(low) is not None and result.get(high) is not None and result[low] > result[high]:
            _refuse_field(reader, task, key, _("%(low)s is greater than %(high)s.", low=low, high=high))
    return result


def _constraint(reader, task, key, result, name, config):
    kind = result["type"]
    if name in ("required", "readonly"):
        result[name] = True
    elif name in ("min", "max") and kind == "number":
        number = _number(config)
        if number is None:
            _refuse_field(reader, task, key, _("%(name)s needs a number.", name=name))
        else:
            result[name] = number
    elif name in ("minlength", "maxlength") and kind == "text":
        if not (config or "").strip().isdigit():
            _refuse_field(reader, task, key, _("%(name)s needs a whole number.", name=name))
        else:
            result[name[:3] + "_length"] = int(config.strip())
    else:
        _refuse_field(reader, task, key, _("the constraint %(name)s is not supported here (required, readonly, "
                                           "min and max on numbers, minlength and maxlength on text).",
                                           name=short(name)))


def _table(reader, task, key, kind, result, properties):
    """The table extension: ``portal:type`` = table and ``portal:columns`` make ``result`` a table field."""
    portal = {name: value for name, value in properties.items() if name.startswith("portal:")}
    unknown = sorted(set(portal) - {"portal:type", "portal:columns"})
    if unknown:
        _refuse_field(reader, task, key, _("the property %(name)s is not supported.", name=short(unknown[0])))
    if not portal:
        return
    if portal.get("portal:type") != "table" or kind != "string":
        _refuse_field(reader, task, key, _("portal:type = table on a string field is the only portal "
                                           "extension."))
        return
    extra = sorted(set(result) - {"key", "label", "type", "required", "readonly"})
    if extra:
        _refuse_field(reader, task, key, _("a table field takes only the constraints required and readonly."))
    try:
        columns = json.loads(portal.get("portal:columns") or "")
    except ValueError:
        _refuse_field(reader, task, key, _("portal:columns must be a JSON list of columns."))
        return
    if not isinstance(columns, list) or not columns:
        _refuse_field(reader, task, key, _("portal:columns must be a JSON list of columns."))
        return
    for column in columns:
        problem = _column_problem(column)
        if problem:
            _refuse_field(reader, task, key, problem)
            return
    result["type"] = "table"
    result["columns"] = columns


def _check_fields(reader, task, fields):
    """The field checks JSON files pass too, so both kinds of file make the same fields."""
    found = {}
    check_fields(fields, "fields", FIELD_TYPES, found)
    for where, problem in found.items():
        match = re.match(r"fields\[(\d+)\](.*)", where)
        label = fields[int(match.group(1))]["key"] + match.group(2) if match else where
        _refuse_field(reader, task, label, problem)


def _number(text):
    try:
        number = Decimal((text or "").strip())
    except InvalidOperation:
        return None
    if not number.is_finite():
        return None
    return int(number) if number == number.to_integral_value() else float(number)


def _column_problem(column):
    """Why a table column from portal:columns is refused, or None (types are checked by _check_fields)."""
    if not isinstance(column, dict):
        return _("each column in portal:columns must be an object.")
    unknown = sorted(set(column) - COLUMN_KEYS)
    if unknown:
        return _("the column key %(name)s is not supported.", name=short(unknown[0]))
    checks = {"key": lambda v: isinstance(v, str), "label": lambda v: isinstance(v, str),
              "type": lambda v: isinstance(v, str), "required": lambda v: isinstance(v, bool),
              "options": lambda v: isinstance(v, list) and all(isinstance(o, str) for o in v),
              "min": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
              "max": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
              "min_length": lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= 0,
              "max_length": lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= 0}
    for name, value in column.items():
        if not checks[name](value):
            return _("the column %(column)s has a bad %(name)s.", column=short(column.get("key")), name=name)
    return None
