"""The approval engine: definitions, form validation, approve/reject, locks,
countersign, recall and suspension. Services here never commit and never see
the request; views and jobs own the transaction."""
