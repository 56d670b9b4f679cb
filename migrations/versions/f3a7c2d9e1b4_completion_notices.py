"""Completion notices: notice (one per batch event, unique on the event), notice_preference,
webhook_endpoint, notice_delivery and notice_delivery_attempt (the delivery log)

New tables only: nothing existing changes, and downgrading drops them.

Revision ID: f3a7c2d9e1b4
Revises: e5b9d1c7a4f2
Create Date: 2026-11-30 06:00:00.000000

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = 'f3a7c2d9e1b4'
down_revision = 'e5b9d1c7a4f2'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table('notice_preference',
    sa.Column('user_id', sa.Integer(), nullable=False),
    sa.Column('email_enabled', sa.Boolean(), server_default=sa.false(), nullable=False),
    sa.Column('email_address', sa.String(length=254), nullable=True),
    sa.Column('webhook_enabled', sa.Boolean(), server_default=sa.true(), nullable=False),
    sa.Column('updated_at', sa.DateTime(), nullable=False),
    sa.ForeignKeyConstraint(['user_id'], ['user.id'], name=op.f('fk_notice_preference_user_id_user'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('user_id', name=op.f('pk_notice_preference'))
    )
    op.create_table('webhook_endpoint',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('user_id', sa.Integer(), nullable=False),
    sa.Column('token_id', sa.Integer(), nullable=True),
    sa.Column('url', sa.String(length=2000), nullable=False),
    sa.Column('secret', sa.String(length=100), nullable=False),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.Column('removed_at', sa.DateTime(), nullable=True),
    sa.ForeignKeyConstraint(['token_id'], ['api_token.id'], name=op.f('fk_webhook_endpoint_token_id_api_token')),
    sa.ForeignKeyConstraint(['user_id'], ['user.id'], name=op.f('fk_webhook_endpoint_user_id_user')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_webhook_endpoint'))
    )
    with op.batch_alter_table('webhook_endpoint', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_webhook_endpoint_user_id'), ['user_id'], unique=False)

    op.create_table('notice',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('user_id', sa.Integer(), nullable=False),
    sa.Column('batch_id', sa.Integer(), nullable=False),
    sa.Column('kind', sa.String(length=30), nullable=False),
    sa.Column('item_id', sa.Integer(), server_default='0', nullable=False),
    sa.Column('round', sa.Integer(), server_default='0', nullable=False),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.Column('read_at', sa.DateTime(), nullable=True),
    sa.ForeignKeyConstraint(['batch_id'], ['batch.id'], name=op.f('fk_notice_batch_id_batch')),
    sa.ForeignKeyConstraint(['user_id'], ['user.id'], name=op.f('fk_notice_user_id_user')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_notice')),
    sa.UniqueConstraint('kind', 'batch_id', 'item_id', 'round', name='uq_notice_event')
    )
    with op.batch_alter_table('notice', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_notice_batch_id'), ['batch_id'], unique=False)
        batch_op.create_index('ix_notice_user_id_id', ['user_id', 'id'], unique=False)
        batch_op.create_index('ix_notice_user_id_read_at', ['user_id', 'read_at'], unique=False)

    op.create_table('notice_delivery',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('notice_id', sa.Integer(), nullable=False),
    sa.Column('channel', sa.String(length=10), nullable=False),
    sa.Column('endpoint_id', sa.Integer(), nullable=True),
    sa.Column('target', sa.String(length=2000), nullable=False),
    sa.Column('status', sa.String(length=20), nullable=False),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('next_attempt_at', sa.DateTime(), nullable=True),
    sa.Column('claim_token', sa.String(length=32), nullable=True),
    sa.Column('claimed_until', sa.DateTime(), nullable=True),
    sa.Column('body', sa.Text(), nullable=True),
    sa.Column('last_error', sa.Text(), nullable=True),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.Column('delivered_at', sa.DateTime(), nullable=True),
    sa.ForeignKeyConstraint(['endpoint_id'], ['webhook_endpoint.id'], name=op.f('fk_notice_delivery_endpoint_id_webhook_endpoint')),
    sa.ForeignKeyConstraint(['notice_id'], ['notice.id'], name=op.f('fk_notice_delivery_notice_id_notice')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_notice_delivery'))
    )
    with op.batch_alter_table('notice_delivery', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_notice_delivery_endpoint_id'), ['endpoint_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_notice_delivery_notice_id'), ['notice_id'], unique=False)
        batch_op.create_index('ix_notice_delivery_status_next', ['status', 'next_attempt_at'], unique=False)

    op.create_table('notice_delivery_attempt',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('delivery_id', sa.Integer(), nullable=False),
    sa.Column('attempt', sa.Integer(), nullable=False),
    sa.Column('outcome', sa.String(length=20), nullable=False),
    sa.Column('response_code', sa.Integer(), nullable=True),
    sa.Column('error', sa.Text(), nullable=True),
    sa.Column('at', sa.DateTime(), nullable=False),
    sa.Column('duration_ms', sa.Integer(), nullable=True),
    sa.ForeignKeyConstraint(['delivery_id'], ['notice_delivery.id'], name=op.f('fk_notice_delivery_attempt_delivery_id_notice_delivery')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_notice_delivery_attempt'))
    )
    with op.batch_alter_table('notice_delivery_attempt', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_notice_delivery_attempt_delivery_id'), ['delivery_id'], unique=False)



def downgrade():
    with op.batch_alter_table('notice_delivery_attempt', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_notice_delivery_attempt_delivery_id'))

    op.drop_table('notice_delivery_attempt')
    with op.batch_alter_table('notice_delivery', schema=None) as batch_op:
        batch_op.drop_index('ix_notice_delivery_status_next')
        batch_op.drop_index(batch_op.f('ix_notice_delivery_notice_id'))
        batch_op.drop_index(batch_op.f('ix_notice_delivery_endpoint_id'))

    op.drop_table('notice_delivery')
    with op.batch_alter_table('notice', schema=None) as batch_op:
        batch_op.drop_index('ix_notice_user_id_read_at')
        batch_op.drop_index('ix_notice_user_id_id')
        batch_op.drop_index(batch_op.f('ix_notice_batch_id'))

    op.drop_table('notice')
    with op.batch_alter_table('webhook_endpoint', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_webhook_endpoint_user_id'))

    op.drop_table('webhook_endpoint')
    op.drop_table('notice_preference')
