"""The batch engine: creating batches, running their items, controlling and
recovering them. Every write of an item's life is ``lifecycle``'s.

Services only: views and jobs commit and enqueue, except where a service's unit
of work is a transaction of its own: the runner commits each claim and each item,
recovery each step it takes."""
