"""who ever replied: a partial index of reply events by contact

Revision ID: 0005_replied
Revises: 0004_crm
Create Date: 2026-11-30 01:30:00
"""
from alembic import op
import sqlalchemy as sa


revision = '0005_replied'
down_revision = '0004_crm'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index('ix_events_replied_contact', 'events', ['contact_id'], unique=False,
                    sqlite_where=sa.text("kind = 'replied'"), postgresql_where=sa.text("kind = 'replied'"))


def downgrade() -> None:
    op.drop_index('ix_events_replied_contact', table_name='events')
