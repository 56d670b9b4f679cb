"""batch.process_id, batch.shared_form and batch_item.decision: names that say what they hold

batch.app_version_id held a process definition id, batch.post_data the shared
form of a form-mode batch, batch_item.post_data an item's own decision
(action, comment, form) from an import.

Revision ID: b7e2d9c4a1f3
Revises: a3d8c4e1f702
Create Date: 2026-11-30 02:30:00.000000

"""
from alembic import op


# revision identifiers, used by Alembic.
revision = 'b7e2d9c4a1f3'
down_revision = 'a3d8c4e1f702'
branch_labels = None
depends_on = None


def upgrade():
    # Two steps: SQLite's batch mode would not add a key on a column renamed
    # in the same step.
    with op.batch_alter_table('batch', schema=None) as batch_op:
        batch_op.drop_constraint('fk_batch_app_version_id_process_definition', type_='foreignkey')
        batch_op.alter_column('app_version_id', new_column_name='process_id')
        batch_op.alter_column('post_data', new_column_name='shared_form')
    with op.batch_alter_table('batch', schema=None) as batch_op:
        batch_op.create_foreign_key(op.f('fk_batch_process_id_process_definition'),
                                    'process_definition', ['process_id'], ['id'])
    with op.batch_alter_table('batch_item', schema=None) as batch_op:
        batch_op.alter_column('post_data', new_column_name='decision')


def downgrade():
    with op.batch_alter_table('batch_item', schema=None) as batch_op:
        batch_op.alter_column('decision', new_column_name='post_data')
    with op.batch_alter_table('batch', schema=None) as batch_op:
        batch_op.drop_constraint('fk_batch_process_id_process_definition', type_='foreignkey')
        batch_op.alter_column('shared_form', new_column_name='post_data')
        batch_op.alter_column('process_id', new_column_name='app_version_id')
    with op.batch_alter_table('batch', schema=None) as batch_op:
        batch_op.create_foreign_key(op.f('fk_batch_app_version_id_process_definition'),
                                    'process_definition', ['app_version_id'], ['id'])
