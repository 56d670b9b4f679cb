"""The batch engine: creating batches, running their items, controlling and
recovering them. Services only; views and jobs own commits and enqueueing."""
