"""preparation lease: campaigns.prepare_owner, campaigns.prepare_lease_until

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-30 01:40:00
"""
from alembic import op
import sqlalchemy as sa
import store.models


revision = '0008'
down_revision = '0007'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('campaigns') as batch:
        batch.add_column(sa.Column('prepare_owner', sa.String(length=32), nullable=True))
        batch.add_column(sa.Column('prepare_lease_until', store.models.UTCDateTime(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('campaigns') as batch:
        batch.drop_column('prepare_lease_until')
        batch.drop_column('prepare_owner')
