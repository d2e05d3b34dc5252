"""order lifecycle: order status/revision/outcome, tasks, pending pushes, per-flow cursors

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-03 16:30:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0003'
down_revision: str | None = '0002'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('orders') as batch:
        batch.add_column(sa.Column('status', sa.String(length=30), nullable=False, server_default=''))
        batch.add_column(sa.Column('revision', sa.Integer(), nullable=False, server_default='0'))
        batch.add_column(sa.Column('outcome', sa.String(length=40), nullable=False, server_default=''))
    op.create_table('flow_cursors',
    sa.Column('flow', sa.String(length=100), nullable=False),
    sa.Column('connector', sa.String(length=100), nullable=False),
    sa.Column('stream', sa.String(length=50), nullable=False),
    sa.Column('position', sa.DateTime(timezone=True), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('flow', 'connector', 'stream')
    )
    op.create_table('tasks',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('kind', sa.String(length=40), nullable=False),
    sa.Column('order_key', sa.String(length=300), nullable=False),
    sa.Column('ref', sa.String(length=200), nullable=False),
    sa.Column('workflow_id', sa.String(length=400), nullable=False),
    sa.Column('role', sa.String(length=40), nullable=False),
    sa.Column('title', sa.String(length=300), nullable=False),
    sa.Column('details', sa.JSON(), nullable=False),
    sa.Column('status', sa.String(length=20), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('closed_by', sa.String(length=100), nullable=False),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('kind', 'order_key', 'ref', name='uq_tasks_kind_order_ref')
    )
    op.create_index('ix_tasks_status', 'tasks', ['status', 'kind'], unique=False)
    op.create_table('pending_pushes',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('connector', sa.String(length=100), nullable=False),
    sa.Column('order_code', sa.String(length=100), nullable=False),
    sa.Column('event', sa.JSON(), nullable=False),
    sa.Column('received_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('delivered_at', sa.DateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_index('ix_pending_pushes_code', 'pending_pushes', ['order_code', 'delivered_at'], unique=False)


def downgrade() -> None:
    op.drop_index('ix_pending_pushes_code', table_name='pending_pushes')
    op.drop_table('pending_pushes')
    op.drop_index('ix_tasks_status', table_name='tasks')
    op.drop_table('tasks')
    op.drop_table('flow_cursors')
    with op.batch_alter_table('orders') as batch:
        batch.drop_column('outcome')
        batch.drop_column('revision')
        batch.drop_column('status')
