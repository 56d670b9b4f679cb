"""Instances, nodes and tasks: start, list, approve/reject, recall."""
