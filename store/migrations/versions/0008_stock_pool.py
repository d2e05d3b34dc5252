"""Central stock pool: levels per SKU and warehouse, batches, reservations, the movement ledger,
and per-channel push state

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-03 19:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0008'
down_revision: str | None = '0007'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('stock_levels',
    sa.Column('sku', sa.String(length=200), nullable=False),
    sa.Column('warehouse', sa.String(length=100), nullable=False),
    sa.Column('on_hand', sa.Integer(), nullable=False),
    sa.Column('reserved', sa.Integer(), nullable=False),
    sa.Column('blocked', sa.Integer(), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.CheckConstraint('reserved >= 0', name='ck_stock_levels_reserved'),
    sa.PrimaryKeyConstraint('sku', 'warehouse')
    )
    op.create_table('stock_batches',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('sku', sa.String(length=200), nullable=False),
    sa.Column('warehouse', sa.String(length=100), nullable=False),
    sa.Column('batch_code', sa.String(length=100), nullable=False),
    sa.Column('expire_date', sa.Date(), nullable=True),
    sa.Column('quantity', sa.Integer(), nullable=False),
    sa.Column('allocated', sa.Integer(), nullable=False),
    sa.Column('received_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('sku', 'warehouse', 'batch_code', name='uq_stock_batches')
    )
    op.create_table('stock_reservations',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('order_key', sa.String(length=300), nullable=False),
    sa.Column('sku', sa.String(length=200), nullable=False),
    sa.Column('warehouse', sa.String(length=100), nullable=False),
    sa.Column('quantity', sa.Integer(), nullable=False),
    sa.Column('shipped', sa.Integer(), nullable=False),
    sa.Column('state', sa.String(length=20), nullable=False),
    sa.Column('channel', sa.String(length=100), nullable=False),
    sa.Column('shop', sa.String(length=100), nullable=False),
    sa.Column('external_id', sa.String(length=200), nullable=False),
    sa.Column('batches', sa.JSON(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('order_key', 'sku', 'warehouse', name='uq_stock_reservations')
    )
    op.create_index('ix_stock_reservations_sku', 'stock_reservations', ['sku', 'state'])
    op.create_table('stock_ledger',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('sku', sa.String(length=200), nullable=False),
    sa.Column('warehouse', sa.String(length=100), nullable=False),
    sa.Column('cause', sa.String(length=30), nullable=False),
    sa.Column('ref', sa.String(length=300), nullable=False),
    sa.Column('on_hand_delta', sa.Integer(), nullable=False),
    sa.Column('reserved_delta', sa.Integer(), nullable=False),
    sa.Column('on_hand_after', sa.Integer(), nullable=False),
    sa.Column('reserved_after', sa.Integer(), nullable=False),
    sa.Column('batch_code', sa.String(length=100), nullable=False),
    sa.Column('note', sa.Text(), nullable=False),
    sa.Column('dedupe_key', sa.String(length=400), nullable=True),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('dedupe_key', name='uq_stock_ledger_dedupe')
    )
    op.create_index('ix_stock_ledger_sku', 'stock_ledger', ['sku', 'id'])
    op.create_table('stock_channels',
    sa.Column('channel', sa.String(length=100), nullable=False),
    sa.Column('sku', sa.String(length=200), nullable=False),
    sa.Column('listed', sa.Integer(), nullable=False),
    sa.Column('listing', sa.JSON(), nullable=False),
    sa.Column('computed', sa.Integer(), nullable=True),
    sa.Column('pushed', sa.Integer(), nullable=True),
    sa.Column('pushed_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('pushes', sa.Integer(), nullable=False),
    sa.Column('shown', sa.Integer(), nullable=True),
    sa.Column('checked_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('error', sa.Text(), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('channel', 'sku')
    )


def downgrade() -> None:
    op.drop_table('stock_channels')
    op.drop_index('ix_stock_ledger_sku', table_name='stock_ledger')
    op.drop_table('stock_ledger')
    op.drop_index('ix_stock_reservations_sku', table_name='stock_reservations')
    op.drop_table('stock_reservations')
    op.drop_table('stock_batches')
    op.drop_table('stock_levels')
