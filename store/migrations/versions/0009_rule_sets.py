"""Business rule sets: every version kept, the current one per name, and the velocity log

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-05 10:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0009'
down_revision: str | None = '0008'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('rule_sets',
    sa.Column('name', sa.String(length=100), nullable=False),
    sa.Column('version', sa.String(length=12), nullable=False),
    sa.Column('definition', sa.JSON(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('created_by', sa.String(length=100), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('updated_by', sa.String(length=100), nullable=False),
    sa.PrimaryKeyConstraint('name')
    )
    op.create_table('rule_set_versions',
    sa.Column('name', sa.String(length=100), nullable=False),
    sa.Column('version', sa.String(length=12), nullable=False),
    sa.Column('definition', sa.JSON(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('created_by', sa.String(length=100), nullable=False),
    sa.PrimaryKeyConstraint('name', 'version')
    )
    op.create_table('velocity_events',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('kind', sa.String(length=20), nullable=False),
    sa.Column('value_hash', sa.String(length=64), nullable=False),
    sa.Column('order_key', sa.String(length=300), nullable=False),
    sa.Column('at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('kind', 'value_hash', 'order_key', name='uq_velocity_events')
    )
    op.create_index('ix_velocity_events_at', 'velocity_events', ['kind', 'value_hash', 'at'])
    op.create_index('ix_velocity_events_purge', 'velocity_events', ['at'])


def downgrade() -> None:
    op.drop_index('ix_velocity_events_purge', table_name='velocity_events')
    op.drop_index('ix_velocity_events_at', table_name='velocity_events')
    op.drop_table('velocity_events')
    op.drop_table('rule_set_versions')
    op.drop_table('rule_sets')
