"""Audit: mapping spec texts by content hash, and the archive of closed order workflows (timeline,
compressed raw history, SKUs)

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-04 10:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0007'
down_revision: str | None = '0006'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('mapping_spec_texts',
    sa.Column('content_hash', sa.String(length=64), nullable=False),
    sa.Column('name', sa.String(length=100), nullable=False),
    sa.Column('source', sa.String(length=500), nullable=False),
    sa.Column('text', sa.Text(), nullable=False),
    sa.Column('first_seen_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('content_hash')
    )
    op.create_table('audit_archive',
    sa.Column('workflow_id', sa.String(length=400), nullable=False),
    sa.Column('run_id', sa.String(length=64), nullable=False),
    sa.Column('task_queue', sa.String(length=200), nullable=False),
    sa.Column('workflow_type', sa.String(length=100), nullable=False),
    sa.Column('order_key', sa.String(length=300), nullable=False),
    sa.Column('status', sa.String(length=30), nullable=False),
    sa.Column('start_time', sa.DateTime(timezone=True), nullable=True),
    sa.Column('close_time', sa.DateTime(timezone=True), nullable=True),
    sa.Column('archived_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('history_events', sa.Integer(), nullable=False),
    sa.Column('history_sha256', sa.String(length=64), nullable=False),
    sa.Column('history_gz', sa.LargeBinary(), nullable=False),
    sa.Column('timeline', sa.JSON(), nullable=False),
    sa.PrimaryKeyConstraint('workflow_id', 'run_id')
    )
    op.create_index('ix_audit_archive_order', 'audit_archive', ['order_key'])
    op.create_index('ix_audit_archive_close', 'audit_archive', ['task_queue', 'close_time'])
    op.create_table('audit_archive_skus',
    sa.Column('sku', sa.String(length=200), nullable=False),
    sa.Column('workflow_id', sa.String(length=400), nullable=False),
    sa.PrimaryKeyConstraint('sku', 'workflow_id')
    )


def downgrade() -> None:
    op.drop_table('audit_archive_skus')
    op.drop_index('ix_audit_archive_close', table_name='audit_archive')
    op.drop_index('ix_audit_archive_order', table_name='audit_archive')
    op.drop_table('audit_archive')
    op.drop_table('mapping_spec_texts')
