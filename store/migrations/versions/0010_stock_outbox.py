"""Stock outbox: one row per SKU whose version moves with every change of its figures (in the same
transaction), and per channel the version last pushed

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-03 19:10:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0010'
down_revision: str | None = '0009'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('stock_outbox',
    sa.Column('sku', sa.String(length=200), nullable=False),
    sa.Column('version', sa.Integer(), nullable=False),
    sa.Column('changed_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('sku')
    )
    op.create_index('ix_stock_outbox_changed', 'stock_outbox', ['changed_at'])
    with op.batch_alter_table('stock_channels') as batch:
        batch.add_column(sa.Column('synced_version', sa.Integer(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('stock_channels') as batch:
        batch.drop_column('synced_version')
    op.drop_index('ix_stock_outbox_changed', table_name='stock_outbox')
    op.drop_table('stock_outbox')
