"""Reading a BPMN file into what the portal stores (contract section 5b): ``bpmn.load_bpmn`` checks a file and
returns its ``BpmnProcess`` (key, name, nodes, conditions, warnings, SpiffWorkflow's spec), or refuses it.

One module per concern: ``bpmn`` (the entry: limits, XML parsing, node order, SpiffWorkflow's parse),
``checks`` (the walk over the elements: what is accepted, what is refused and why), ``user_tasks`` (a user
task's node dict), ``form_data`` (``camunda:formData`` -> field dicts) and ``elements`` (namespaces and how
messages name an element). A new construct read from a process file gets a module here.

The loader touches no database and never imports the engine (``portal.workflow.engine``) or the JSON
definitions (``portal.workflow.json_definitions``), which draw BPMN for it to read; tests/test_import_graph.py
holds that line.
"""
