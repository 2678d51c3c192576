"""mailbox health back-off: failures in a row and when to try again

Revision ID: 0009_mailbox_health
Revises: 0008
"""
from alembic import op
import sqlalchemy as sa
import store.models


revision = "0009_mailbox_health"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("mailboxes") as batch:
        batch.add_column(sa.Column("health_failures", sa.Integer(), nullable=False, server_default="0"))
        batch.add_column(sa.Column("health_retry_at", store.models.UTCDateTime(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("mailboxes") as batch:
        batch.drop_column("health_retry_at")
        batch.drop_column("health_failures")
