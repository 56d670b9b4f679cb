"""Batches: create, list, show, items, retry, pause, resume, cancel."""
