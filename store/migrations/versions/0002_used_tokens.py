"""single-use links: used_tokens

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-30 00:40:00
"""
from alembic import op
import sqlalchemy as sa
import store.models


revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('used_tokens',
    sa.Column('digest', sa.String(length=64), nullable=False),
    sa.Column('purpose', sa.String(length=32), nullable=False),
    sa.Column('used_at', store.models.UTCDateTime(), nullable=False),
    sa.Column('expires_at', store.models.UTCDateTime(), nullable=False),
    sa.PrimaryKeyConstraint('digest')
    )
    op.create_index(op.f('ix_used_tokens_expires_at'), 'used_tokens', ['expires_at'], unique=False)


def downgrade() -> None:
    op.drop_index(op.f('ix_used_tokens_expires_at'), table_name='used_tokens')
    op.drop_table('used_tokens')
