"""What every feature of the portal stands on: the Flask extensions and the database session
(``extensions``), Redis and the one way to enqueue a job (``queueing``), JSON logs (``logs``),
Prometheus metrics (``metrics``) and RQ's dashboard (``admin_rq``), security headers (``security``),
how a request finds its user (``auth_loader``), workbook files over HTTP (``http_files``) and
pagination (``paging``).

The rule: nothing here imports a feature package (batches, workflow, notices, web, api, excel, jobs,
accounts); features import infra, never the other way. tests/test_import_graph.py checks it and
lists the few imports that break it today, each with the reason.
"""
