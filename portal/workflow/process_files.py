"""Process files loaded as process versions: a JSON definition (contract section 5) or a BPMN file
(section 5b), stored as a new version of its key when it changed.

Both kinds run on the one engine: a JSON definition is stored with the equivalent BPMN file
(``portal.workflow.json_definitions.to_bpmn``), and either file is read by
``portal.workflow.loading.bpmn.load_bpmn``, whose user tasks become the version's nodes
(``portal.workflow.store``). The CLI, the admin upload page and the demo load files here.
"""
import hashlib
import json
from dataclasses import dataclass

from portal.errors import ValidationFailed
from portal.models import ProcessDefinition
from portal.workflow.json_definitions.checks import check_definition, read_file
from portal.workflow.json_definitions.to_bpmn import bpmn_from_json
from portal.workflow.loading.bpmn import load_bpmn
from portal.workflow.store import store_version


def _digest(data):
    return hashlib.sha256(json.dumps(data, sort_keys=True, ensure_ascii=False).encode()).hexdigest()


def load_definition(data):
    """Store a JSON definition as the next version of its key unless it is unchanged.

    Returns ``(definition, created)``. Raises ValidationFailed on a bad file.
    """
    problems = check_definition(data)
    if problems:
        raise ValidationFailed(problems, message="The process definition is invalid.")
    bpmn = bpmn_from_json(data)
    process = load_bpmn(bpmn)
    # The JSON file's own fields are kept as written (the BPMN form says the same in Camunda's words).
    written = {node["key"]: node for node in data["nodes"]}
    for node in process.nodes:
        node["fields"] = written[node["key"]].get("fields", [])
    return store_version(key=data["key"], name=data["name"], source="json", definition=data, bpmn=bpmn,
                         process=process, digest=_digest(data))


@dataclass(frozen=True)
class LoadReport:
    """What loading a process file did: the version it stands for, whether it is new, and warnings about
    what the file says that the portal leaves out (a user task's formKey), for the person who loaded it."""
    definition: ProcessDefinition
    created: bool
    warnings: tuple = ()


def _bpmn_report(content):
    process = load_bpmn(content)
    summary = {"key": process.key, "name": process.name, "initiator": process.initiator,
               "nodes": [node["key"] for node in process.nodes]}
    definition, created = store_version(key=process.key, name=process.name, source="bpmn", definition=summary,
                                        bpmn=process.xml, process=process,
                                        digest=hashlib.sha256(process.xml.encode("utf-8")).hexdigest())
    return LoadReport(definition, created, tuple(process.warnings))


def load_bpmn_definition(content):
    """Store a BPMN file (bytes) as the next version of its process key unless it is unchanged.

    Returns ``(definition, created)``. Raises ValidationFailed naming every refused element.
    """
    report = _bpmn_report(content)
    return report.definition, report.created


def load_process_file(filename, content):
    """``load_process_report``'s version and whether it is new: ``(definition, created)``."""
    report = load_process_report(filename, content)
    return report.definition, report.created


def load_process_report(filename, content):
    """Load an uploaded process file: BPMN (``.bpmn``/``.xml``, or text starting with ``<``) or JSON.

    Returns a ``LoadReport``; a file that is neither, or is refused, raises ValidationFailed with the
    problems keyed by where they are (``file`` for the file as a whole).
    """
    name = (filename or "").lower()
    if name.endswith((".bpmn", ".xml")) or content.lstrip(b"\xef\xbb\xbf \t\r\n").startswith(b"<"):
        return _bpmn_report(content)
    return LoadReport(*load_definition(read_file(content)))
