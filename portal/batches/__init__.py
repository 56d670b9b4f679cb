"""The batch engine: creating batches, running their items, controlling and
recovering them. Every write of an item's life is ``lifecycle``'s. Services
only: they never import a job, and ask for background work inside the
caller's transaction (``dispatch``'s ``*_after_commit``, enqueued once it
commits).

Commits: a view or job commits the work it asked these services for, except
where a transaction per row is the design: the runner commits each claim and
each item (``runner``), recovery each step's row (``recovery``); both are
called by jobs only."""
