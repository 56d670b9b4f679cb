"""A BPMN user task read into the portal's node dict: its assignee, candidates, multi-instance and form.

Node dicts: ``{"key", "name", "assignee", "fields", "candidate_users", "candidate_groups", "multi_instance",
"tests_action"}``. ``key`` is the user task's id, ``name`` its name (or id); ``fields`` come from
``portal.workflow.loading.form_data``; ``tests_action`` is set once the whole file is read
(``portal.workflow.loading.bpmn``).

Assignees (``assignee`` is one string, as in JSON files):

- ``camunda:assignee="alice"``        -> ``"user:alice"``
- ``camunda:assignee="${starter}"``   -> ``"var:starter"``: the instance variable ``starter`` holds the user name
  at run time (the multi-instance element variable, the start event's ``camunda:initiator``, or instance data)
- no assignee, one candidate group and no candidate user -> ``"role:NAME"`` (a group is a workflow role)
- no assignee, one candidate user and no candidate group -> ``"user:NAME"``
- no assignee, several candidates -> ``"candidates"``: any user named in ``candidate_users`` or holding a role in
  ``candidate_groups`` may take the task.

``candidate_users`` and ``candidate_groups`` are always lists (from the comma lists ``camunda:candidateUsers`` and
``camunda:candidateGroups``; names only, an expression there is refused); with an assignee they are kept for
information. A user task with neither assignee nor candidates is refused.

``multi_instance`` is ``None`` or ``{"collection", "element_variable", "sequential", "completion_condition"}``:
``collection`` is the variable name (``${signers}`` or ``signers`` -> ``"signers"``), ``element_variable`` may be
``None``, ``completion_condition`` is the condition text or ``None``.

Problems go to ``reader.refuse`` (``portal.workflow.loading.checks.Reader``), keyed by the user task.
"""
import re

from flask_babel import gettext as _

from portal.workflow.loading.elements import (BPMN, CAMUNDA, MAX_KEY, MAX_NAME, camunda_attribute, describe,
                                              display_name, is_element, qualified, short, split_tag)
from portal.workflow.loading.form_data import read_form

NAME_RE = re.compile(r"[\w.-]{1,80}")  # user and workflow role names (portal/accounts.py)
IDENTIFIER = r"[A-Za-z_][A-Za-z0-9_]{0,79}"
VARIABLE_RE = re.compile(r"\$\{\s*(" + IDENTIFIER + r")\s*\}")
BARE_VARIABLE_RE = re.compile(IDENTIFIER)


def read_user_task(reader, el):
    """Check one user task and record its node dict in ``reader.nodes``."""
    reader.children(el, {"multiInstanceLoopCharacteristics"})
    extensions = reader.extensions(el, {"formData", "properties"})
    key = el.get("id")
    name = display_name(el)
    if len(key) > MAX_KEY:
        reader.refuse(el, _("%(element)s: the id is longer than %(n)s characters.",
                            element=describe(el), n=MAX_KEY))
    if len(name) > MAX_NAME:
        reader.refuse(el, _("%(element)s: the name is longer than %(n)s characters.",
                            element=describe(el), n=MAX_NAME))
    node = {"key": key, "name": name}
    node.update(_assignee(reader, el))
    forms = [x for x in extensions if is_element(x, CAMUNDA, "formData")]
    if len(forms) > 1:
        reader.refuse(el, _("%(element)s has more than one form.", element=describe(el)))
    node["fields"] = read_form(reader, el, forms[0]) if forms else []
    _form_key(reader, el, node["fields"])
    node["multi_instance"] = _multi_instance(reader, el)
    node["tests_action"] = False
    reader.nodes[key] = node


def _form_key(reader, el, fields):
    """camunda:formKey names a form another front end shows (``embedded:``, ``app:``, a plain key): the portal
    draws the task's generated form fields instead and says so in a warning. A Camunda Form
    (``camunda-forms:``) is the task's form itself, which the portal cannot read: refused."""
    key = camunda_attribute(el, "formKey")
    if key is None:
        return
    if key.strip().startswith("camunda-forms:"):
        reader.refuse(el, _("%(element)s: camunda:%(attribute)s is not supported; use a generated task form "
                            "(form fields).", element=describe(el), attribute="formKey"))
    elif fields:
        reader.warnings.append(_("User task '%(task)s': formKey '%(key)s' is not rendered; the task uses its "
                                 "form fields.", task=short(display_name(el)), key=short(key)))
    else:
        reader.warnings.append(_("User task '%(task)s': formKey '%(key)s' is not rendered; the task has no "
                                 "form fields.", task=short(display_name(el)), key=short(key)))


def _assignee(reader, el):
    found = {"assignee": None, "candidate_users": [], "candidate_groups": []}
    raw = (camunda_attribute(el, "assignee") or "").strip()
    if raw:
        variable = VARIABLE_RE.fullmatch(raw)
        if variable:
            found["assignee"] = "var:" + variable.group(1)
        elif NAME_RE.fullmatch(raw):
            found["assignee"] = "user:" + raw
        else:
            reader.refuse(el, _("%(element)s: the assignee %(assignee)s is not a user name or "
                                "${variable}.", element=describe(el), assignee=short(raw)))
            return found
    for attribute, target in (("candidateUsers", "candidate_users"), ("candidateGroups", "candidate_groups")):
        for name in (camunda_attribute(el, attribute) or "").split(","):
            name = name.strip()
            if not name or name in found[target]:
                continue
            if not NAME_RE.fullmatch(name):
                reader.refuse(el, _("%(element)s: %(name)s in camunda:%(attribute)s is not a name (only names "
                                    "are read there).", element=describe(el), name=short(name), attribute=attribute))
                continue
            found[target].append(name)
    users, groups = found["candidate_users"], found["candidate_groups"]
    if found["assignee"]:
        return found
    if not users and not groups:
        reader.refuse(el, _("%(element)s has no assignee, candidate users or candidate groups.",
                            element=describe(el)))
    elif len(groups) == 1 and not users:
        found["assignee"] = "role:" + groups[0]
    elif len(users) == 1 and not groups:
        found["assignee"] = "user:" + users[0]
    else:
        found["assignee"] = "candidates"
    return found


def _multi_instance(reader, el):
    loop = next((c for c in el if is_element(c, BPMN, "multiInstanceLoopCharacteristics")), None)
    if loop is None:
        return None
    raw = (camunda_attribute(loop, "collection") or "").strip()
    variable = VARIABLE_RE.fullmatch(raw) or BARE_VARIABLE_RE.fullmatch(raw)
    collection = (variable.group(1) if variable.re is VARIABLE_RE else variable.group(0)) if variable else None
    if collection is None:
        reader.refuse(el, _("%(element)s: a multi-instance task needs camunda:collection naming a variable, "
                            "such as ${signers}.", element=describe(el)))
    element_variable = (camunda_attribute(loop, "elementVariable") or "").strip() or None
    if element_variable is not None and not BARE_VARIABLE_RE.fullmatch(element_variable):
        reader.refuse(el, _("%(element)s: camunda:elementVariable must be a variable name.",
                            element=describe(el)))
    condition = None
    for child in loop:
        namespace, local = split_tag(child.tag)
        if namespace is None or (namespace == BPMN and local in ("documentation", "extensionElements")):
            continue
        if namespace == BPMN and local == "completionCondition":
            condition = (child.text or "").strip() or None
            if condition is not None:
                compiled = reader.compile(el, condition)
                if compiled is not None:
                    reader.completion[el.get("id")] = compiled
        else:
            reader.refuse(el, _("%(element)s: %(child)s is not supported in a multi-instance task; use "
                                "camunda:collection.", element=describe(el), child=qualified(child.tag)))
    reader.extensions(loop, {"properties"})
    return {"collection": collection, "element_variable": element_variable,
            "sequential": loop.get("isSequential") == "true", "completion_condition": condition}
