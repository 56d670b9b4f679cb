"""JSON process definitions (contract section 5): a JSON file read and checked (``checks``), and drawn as the
equivalent BPMN file (``to_bpmn``), which the BPMN loader (``portal.workflow.loading``) then reads like any other.

This side may import the loader; the loader never imports it. ``portal.workflow.process_files`` stores either
kind of file as a process version.
"""
