"""batch_item_attempt (batch_id, finished_at): the time left reads a batch's recent runs

Revision ID: c4f1a8e2d6b9
Revises: b7e2d9c4a1f3
Create Date: 2026-11-30 03:20:00.000000

"""
from alembic import op


# revision identifiers, used by Alembic.
revision = 'c4f1a8e2d6b9'
down_revision = 'b7e2d9c4a1f3'
branch_labels = None
depends_on = None


def upgrade():
    op.create_index('ix_batch_item_attempt_batch_finished', 'batch_item_attempt',
                    ['batch_id', 'finished_at'], unique=False)


def downgrade():
    op.drop_index('ix_batch_item_attempt_batch_finished', table_name='batch_item_attempt')
