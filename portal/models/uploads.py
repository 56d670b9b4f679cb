"""Uploads kept between their preview and the user's confirmation.

The file lives in the database, not on one web server's disk, so the confirm
request may reach any process. A row is deleted when its batch is made and
rows older than a day are purged on the next upload.
"""
from datetime import datetime

from sqlalchemy import ForeignKey, LargeBinary, String
from sqlalchemy.orm import Mapped, mapped_column

from portal.infra.extensions import db
from portal.models.base import utcnow


class PendingUpload(db.Model):
    __tablename__ = "pending_upload"

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("user.id", ondelete="CASCADE"), index=True)
    node_id: Mapped[int] = mapped_column(ForeignKey("node.id", ondelete="CASCADE"))
    mode: Mapped[str] = mapped_column(String(20))
    # Shown back to the user only; never used to build a path or a header.
    filename: Mapped[str] = mapped_column(String(200))
    content: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
