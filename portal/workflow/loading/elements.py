"""Shared helpers of the BPMN loader: namespaces, element names and the way messages name an element.

Every module of ``portal.workflow.loading`` may import from here; this module imports nothing of the
portal's, so the loader's modules never import one another in a circle.
"""

BPMN = "http://www.omg.org/spec/BPMN/20100524/MODEL"
BPMNDI = "http://www.omg.org/spec/BPMN/20100524/DI"
CAMUNDA = "http://camunda.org/schema/1.0/bpmn"
PREFIXES = {BPMN: "bpmn", BPMNDI: "bpmndi", CAMUNDA: "camunda"}

MAX_KEY = 80  # node.key, process_definition.key
MAX_NAME = 200  # node.name, process_definition.name


def split_tag(tag):
    """(namespace, local name) of a tag; (None, None) for comments and processing instructions."""
    if not isinstance(tag, str):
        return None, None
    if tag.startswith("{"):
        namespace, _sep, local = tag[1:].partition("}")
        return namespace, local
    return "", tag


def local_name(el):
    return split_tag(el.tag)[1]


def is_element(el, namespace, local):
    return split_tag(el.tag) == (namespace, local)


def qualified(tag):
    """The tag as a process author reads it: ``bpmn:userTask`` rather than ``{namespace}userTask``."""
    namespace, local = split_tag(tag)
    prefix = PREFIXES.get(namespace)
    return f"{prefix}:{local}" if prefix else (f"{{{namespace}}}{local}" if namespace else local)


def short(text, limit=80):
    # One line, and not all of a hostile 2 MB attribute.
    text = " ".join(str(text or "").split())
    return text if len(text) <= limit else text[:limit] + "…"


def describe(el):
    """How messages name an element: its kind, its name if it has one, and its id."""
    name = short(el.get("name"))
    ident = short(el.get("id")) or "?"
    return f'{local_name(el)} "{name}" ({ident})' if name else f"{local_name(el)} {ident}"


def camunda_attribute(el, name):
    return el.get(f"{{{CAMUNDA}}}{name}")


def display_name(el):
    """An element's name on one line, or its id when it has no name."""
    return " ".join((el.get("name") or "").split()) or el.get("id") or ""
