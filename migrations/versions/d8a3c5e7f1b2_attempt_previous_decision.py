"""batch_item_attempt.previous_decision: what a corrected item held before

Revision ID: d8a3c5e7f1b2
Revises: c4f1a8e2d6b9
Create Date: 2026-11-30 03:40:00.000000

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = 'd8a3c5e7f1b2'
down_revision = 'c4f1a8e2d6b9'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('batch_item_attempt', schema=None) as batch_op:
        batch_op.add_column(sa.Column('previous_decision', sa.JSON(), nullable=True))


def downgrade():
    with op.batch_alter_table('batch_item_attempt', schema=None) as batch_op:
        batch_op.drop_column('previous_decision')
