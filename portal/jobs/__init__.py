"""RQ entry points: thin functions that take ids and call services.

Every one is declared with ``portal.infra.queueing.background_job`` (its name, queue, timeout and what
finds its work again when it is lost) and enqueued through ``portal.infra.queueing.enqueue``, or
``enqueue_after_commit`` inside a transaction; the periodic ones are listed in ``periodic``.
Importing this package declares them all (the app factory does): a service names the job it
needs by its declared name and never imports it.

Commits: a job owns the commit of its unit of work, like a view; the services it calls that work
row by row (the runner's item transactions, recovery's steps, a delivery's claim and finish)
commit each row themselves, by design.

Workers run them inside the application context pushed by ``flask --app app worker``; the job
modules never create an app.
"""
from portal.jobs import batch_jobs, excel_jobs, notice_jobs, periodic  # noqa: F401
