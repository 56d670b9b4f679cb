"""Workbook files over HTTP, shared by the pages and the API: the download
response, and the posted file read with the upload size limit turned into a
readable 413."""
import io

from flask import current_app, request, send_file
from flask_babel import gettext as _
from werkzeug.exceptions import RequestEntityTooLarge

from portal.excel import XLSX_MIMETYPE, UploadTooLarge


def xlsx_response(content, filename):
    """A download of ``content``; ``filename`` is always built by the server."""
    return send_file(io.BytesIO(content), mimetype=XLSX_MIMETYPE, as_attachment=True,
                     download_name=filename, max_age=0)


def posted_file(field="file"):
    """The multipart upload in ``field`` (a FileStorage) or None."""
    try:
        return request.files.get(field)
    except RequestEntityTooLarge:
        raise UploadTooLarge(_("The upload is larger than %(mb)s MB.",
                               mb=current_app.config["MAX_UPLOAD_MB"]))
