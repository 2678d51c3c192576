"""tasks.send_at: a task's draft scheduled to be sent by the worker (the web app's Schedule)

Revision ID: 0006_task_send_at
Revises: 0005_replied
Create Date: 2026-11-30 01:00:00
"""
from alembic import op
import sqlalchemy as sa
import store.models


revision = '0006_task_send_at'
down_revision = '0005_replied'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('tasks') as batch:
        batch.add_column(sa.Column('send_at', store.models.UTCDateTime(), nullable=True))
        batch.create_index(batch.f('ix_tasks_send_at'), ['send_at'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('tasks') as batch:
        batch.drop_index(batch.f('ix_tasks_send_at'))
        batch.drop_column('send_at')
