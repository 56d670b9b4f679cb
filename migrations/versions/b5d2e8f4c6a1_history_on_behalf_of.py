"""history.on_behalf_of_id: a decision one person made for another (a correction of a batch item,
run as the batch's creator)

Revision ID: b5d2e8f4c6a1
Revises: a9c4e2f7b3d1
Create Date: 2026-12-20 10:00:00.000000

Rows written before name no one: their ``user_id`` stays who they named.
"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = 'b5d2e8f4c6a1'
down_revision = 'a9c4e2f7b3d1'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('history', schema=None) as batch_op:
        batch_op.add_column(sa.Column('on_behalf_of_id', sa.Integer(), nullable=True))
        batch_op.create_foreign_key(batch_op.f('fk_history_on_behalf_of_id_user'), 'user',
                                    ['on_behalf_of_id'], ['id'])


def downgrade():
    with op.batch_alter_table('history', schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f('fk_history_on_behalf_of_id_user'), type_='foreignkey')
        batch_op.drop_column('on_behalf_of_id')
