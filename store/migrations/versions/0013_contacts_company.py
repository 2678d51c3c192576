"""an index on contacts' company: the web launch form lists distinct companies in order

Revision ID: 0013_contacts_company
Revises: 0012_campaign_day_counts

The form's first 500 companies by name are then read from the index (an ordered scan that stops
at the 500th) instead of grouping every contact (60 ms at 100,000 contacts, every 10 seconds a
dashboard is open).
"""
from alembic import op


revision = "0013_contacts_company"
down_revision = "0012_campaign_day_counts"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_contacts_company", "contacts", ["company"])


def downgrade() -> None:
    op.drop_index("ix_contacts_company", table_name="contacts")
