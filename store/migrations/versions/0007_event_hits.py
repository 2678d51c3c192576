"""tracking repeats counted on one row: events.hits

Revision ID: 0007
Revises: 0006_task_send_at
Create Date: 2026-11-30 01:10:00
"""
from alembic import op
import sqlalchemy as sa


revision = '0007'
down_revision = '0006_task_send_at'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('events') as batch:
        batch.add_column(sa.Column('hits', sa.Integer(), nullable=False, server_default='1'))


def downgrade() -> None:
    with op.batch_alter_table('events') as batch:
        batch.drop_column('hits')
