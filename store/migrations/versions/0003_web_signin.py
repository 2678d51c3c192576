"""web app sign-in: one-time links and sessions

Revision ID: 0003_web
Revises: 0002
Create Date: 2026-11-30 00:20:00
"""
from alembic import op
import sqlalchemy as sa
import store.models


revision = '0003_web'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade() -> None:
    for table in ('web_links', 'web_sessions'):
        columns = [
            sa.Column('id', sa.Integer(), nullable=False),
            sa.Column('token_hash', sa.String(length=64), nullable=False),
            sa.Column('rep_id', sa.Integer(), nullable=False),
            sa.Column('created_at', store.models.UTCDateTime(), nullable=False),
            sa.Column('expires_at', store.models.UTCDateTime(), nullable=False),
        ]
        columns.append(sa.Column('used_at' if table == 'web_links' else 'ended_at', store.models.UTCDateTime(),
                                 nullable=True))
        op.create_table(table, *columns,
                        sa.ForeignKeyConstraint(['rep_id'], ['reps.id'], name=op.f(f'fk_{table}_rep_id_reps')),
                        sa.PrimaryKeyConstraint('id', name=op.f(f'pk_{table}')),
                        sa.UniqueConstraint('token_hash', name=op.f(f'uq_{table}_token_hash')))
        op.create_index(op.f(f'ix_{table}_rep_id'), table, ['rep_id'], unique=False)


def downgrade() -> None:
    for table in ('web_sessions', 'web_links'):
        op.drop_index(op.f(f'ix_{table}_rep_id'), table_name=table)
        op.drop_table(table)
