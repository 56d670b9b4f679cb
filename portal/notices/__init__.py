"""Completion notices: a batch's creator is told when it finishes (with or without errors), is
cancelled, or when one of its items reaches the retry limit.

Every event makes exactly one in-app notice (``records``, from the batch engine's signals in
``receivers``), and deliveries on the channels the user chose (``preferences``): an e-mail
(``mail``) and a POST to each webhook URL (``webhook``), sent by RQ jobs after the event's
transaction commits (``outbox``; the jobs are ``portal.jobs.notice_jobs``), each attempt logged, retried with backoff
(``delivery``). A webhook reaches public addresses only (``addresses``), through one POST to
the address that was checked, within a total deadline (``transport``). ``web`` holds the pages and
the navbar badge's count.
"""


def init_app(app):
    """Listen to the batch events and serve the pages (every process of the portal creates its app
    through here, so workers record notices too)."""
    from portal.notices import receivers, web

    receivers.connect()
    app.register_blueprint(web.bp)

    @app.context_processor
    def _notice_badge():
        return {"unread_notice_count": web.unread_count}
