"""CRM sync: the Salesforce connection and the outbox of events to write

Revision ID: 0004_crm
Revises: 0003_web
Create Date: 2026-11-30 00:30:00
"""
from alembic import op
import sqlalchemy as sa
import store.models


revision = '0004_crm'
down_revision = '0003_web'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('contacts') as batch:
        batch.add_column(sa.Column('salesforce_id', sa.String(length=18), nullable=True))
    op.create_table('crm_connections',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('provider', sa.String(length=16), nullable=False),
    sa.Column('owner_id', sa.Integer(), nullable=False),
    sa.Column('health', sa.String(length=16), nullable=False),
    sa.Column('health_reason', sa.Text(), nullable=True),
    sa.Column('credentials', sa.LargeBinary(), nullable=True),
    sa.Column('instance_url', sa.Text(), nullable=True),
    sa.Column('user_id', sa.String(length=18), nullable=True),
    sa.Column('org_id', sa.String(length=18), nullable=True),
    sa.Column('since_event_id', sa.Integer(), nullable=False),
    sa.Column('event_cursor', sa.Integer(), nullable=False),
    sa.Column('throttle_until', store.models.UTCDateTime(), nullable=True),
    sa.Column('api_used', sa.Integer(), nullable=True),
    sa.Column('api_max', sa.Integer(), nullable=True),
    sa.Column('last_synced_at', store.models.UTCDateTime(), nullable=True),
    sa.Column('last_error', sa.Text(), nullable=True),
    sa.Column('sync_owner', sa.String(length=80), nullable=True),
    sa.Column('sync_until', store.models.UTCDateTime(), nullable=True),
    sa.Column('connected_at', store.models.UTCDateTime(), nullable=False),
    sa.Column('updated_at', store.models.UTCDateTime(), nullable=False),
    sa.ForeignKeyConstraint(['owner_id'], ['reps.id'], name=op.f('fk_crm_connections_owner_id_reps')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_crm_connections')),
    sa.UniqueConstraint('provider', name=op.f('uq_crm_connections_provider'))
    )
    op.create_table('crm_outbox',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('key', sa.String(length=120), nullable=False),
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('event_id', sa.Integer(), nullable=True),
    sa.Column('message_id', sa.Integer(), nullable=True),
    sa.Column('contact_id', sa.Integer(), nullable=True),
    sa.Column('rep_id', sa.Integer(), nullable=True),
    sa.Column('email', sa.String(length=320), nullable=False),
    sa.Column('subject', sa.Text(), nullable=False),
    sa.Column('description', sa.Text(), nullable=True),
    sa.Column('activity_date', sa.String(length=10), nullable=False),
    sa.Column('state', sa.String(length=16), nullable=False),
    sa.Column('record_id', sa.String(length=18), nullable=True),
    sa.Column('who_id', sa.String(length=18), nullable=True),
    sa.Column('owner_ref', sa.String(length=18), nullable=True),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('error', sa.Text(), nullable=True),
    sa.Column('intent_at', store.models.UTCDateTime(), nullable=True),
    sa.Column('created_at', store.models.UTCDateTime(), nullable=False),
    sa.Column('updated_at', store.models.UTCDateTime(), nullable=False),
    sa.ForeignKeyConstraint(['event_id'], ['events.id'], name=op.f('fk_crm_outbox_event_id_events')),
    sa.ForeignKeyConstraint(['message_id'], ['messages.id'], name=op.f('fk_crm_outbox_message_id_messages')),
    sa.ForeignKeyConstraint(['contact_id'], ['contacts.id'], name=op.f('fk_crm_outbox_contact_id_contacts')),
    sa.ForeignKeyConstraint(['rep_id'], ['reps.id'], name=op.f('fk_crm_outbox_rep_id_reps')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_crm_outbox')),
    sa.UniqueConstraint('key', name=op.f('uq_crm_outbox_key'))
    )
    op.create_index('ix_crm_outbox_state', 'crm_outbox', ['state', 'id'], unique=False)
    op.create_index(op.f('ix_crm_outbox_message_id'), 'crm_outbox', ['message_id'], unique=False)
    op.create_index(op.f('ix_crm_outbox_record_id'), 'crm_outbox', ['record_id'], unique=False)


def downgrade() -> None:
    op.drop_index(op.f('ix_crm_outbox_record_id'), table_name='crm_outbox')
    op.drop_index(op.f('ix_crm_outbox_message_id'), table_name='crm_outbox')
    op.drop_index('ix_crm_outbox_state', table_name='crm_outbox')
    op.drop_table('crm_outbox')
    op.drop_table('crm_connections')
    with op.batch_alter_table('contacts') as batch:
        batch.drop_column('salesforce_id')
