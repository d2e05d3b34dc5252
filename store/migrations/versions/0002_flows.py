"""flows, flow versions, held pushes

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23 22:40:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0002'
down_revision: str | None = '0001'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('flows',
    sa.Column('name', sa.String(length=100), nullable=False),
    sa.Column('version', sa.String(length=12), nullable=False),
    sa.Column('definition', sa.JSON(), nullable=False),
    sa.Column('paused', sa.Boolean(), nullable=False, server_default=sa.false()),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('created_by', sa.String(length=100), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('updated_by', sa.String(length=100), nullable=False),
    sa.PrimaryKeyConstraint('name')
    )
    op.create_table('flow_versions',
    sa.Column('name', sa.String(length=100), nullable=False),
    sa.Column('version', sa.String(length=12), nullable=False),
    sa.Column('definition', sa.JSON(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('name', 'version')
    )
    op.create_table('held_pushes',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('flow', sa.String(length=100), nullable=False),
    sa.Column('connector', sa.String(length=100), nullable=False),
    sa.Column('event', sa.JSON(), nullable=False),
    sa.Column('received_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('released_at', sa.DateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('held_pushes', schema=None) as batch_op:
        batch_op.create_index('ix_held_pushes_flow', ['flow', 'released_at'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('held_pushes', schema=None) as batch_op:
        batch_op.drop_index('ix_held_pushes_flow')

    op.drop_table('held_pushes')
    op.drop_table('flow_versions')
    op.drop_table('flows')
