"""batch_item.error_code and error_detail, batch_item_attempt.error_detail: item errors as
message data, rendered in each reader's language

Revision ID: a9c4e2f7b3d1
Revises: f3a7c2d9e1b4
Create Date: 2026-12-14 10:00:00.000000

Rows written before keep their text in ``error`` (shown as it is); their code is the
``error_kind`` they had (the reason for ignored items; validation, user or unexpected).
"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = 'a9c4e2f7b3d1'
down_revision = 'f3a7c2d9e1b4'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('batch_item', schema=None) as batch_op:
        batch_op.add_column(sa.Column('error_code', sa.String(length=40), nullable=True))
        batch_op.add_column(sa.Column('error_detail', sa.JSON(), nullable=True))
    with op.batch_alter_table('batch_item_attempt', schema=None) as batch_op:
        batch_op.add_column(sa.Column('error_detail', sa.JSON(), nullable=True))
    op.execute("UPDATE batch_item SET error_code = error_kind WHERE error_kind IS NOT NULL")


def downgrade():
    with op.batch_alter_table('batch_item_attempt', schema=None) as batch_op:
        batch_op.drop_column('error_detail')
    with op.batch_alter_table('batch_item', schema=None) as batch_op:
        batch_op.drop_column('error_detail')
        batch_op.drop_column('error_code')
