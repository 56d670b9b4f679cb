"""Excel workbooks: node templates, reading uploads safely, and error workbooks.

openpyxl is used only inside this package; uploads are read with python-calamine
after ``safety`` has checked the zip container and every XML part.

Modules: ``layout`` (where each value lives, labels, metadata), ``writer``
(openpyxl sheets), ``templates`` (a node's template), ``errors_workbook`` (the
failed items of a batch), ``safety`` (hostile-file checks), ``extents`` (the
size each sheet claims, against its bound), ``reader`` (upload -> entries),
``sandbox`` (reading in a child process with memory and time limits) and
``reader_child`` (the program that child runs).
"""
from portal.errors import WorkflowError

XLSX_MIMETYPE = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"


class UnusableFile(WorkflowError):
    """The upload cannot be read as a portal workbook for this node and mode."""

    status = 400
    reason = "unusable_file"


class UploadTooLarge(WorkflowError):
    """The upload is over MAX_UPLOAD_MB (HTTP 413)."""

    status = 413
    reason = "too_large"
