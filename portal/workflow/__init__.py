"""The workflow: process files loaded as versions, and instances run on the engine.

Services here never commit and never see the request; views and jobs own the transaction. The parts, each
importing only those listed before it (tests/test_import_graph.py holds the line):

- ``fields`` (the field definitions both kinds of process file give) and ``expressions`` (the condition
  language: checked when a file is loaded, evaluated when an instance runs);
- ``loading/``: a BPMN file read and checked into a ``BpmnProcess`` (contract section 5b);
- ``json_definitions/``: a JSON definition (section 5) checked and drawn as the equivalent BPMN file;
- ``store`` (process versions as stored) and ``process_files`` (an uploaded file of either kind stored as a
  version);
- ``forms`` (a decision's values validated against the node's fields) and ``visibility`` (who may see a task
  and act on it now, and what the task pages tell of it: badges, what may be done);
- ``engine/``: instances on SpiffWorkflow, moved on by decisions (``from portal.workflow import engine``);
- what the pages and the API read: ``listing`` (lists and pages) and ``diagrams`` (what a diagram marks).
"""

