"""push events already processed (marketplace webhooks deduplicated by their event id)

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-03 17:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0004'
down_revision: str | None = '0003'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('push_events',
    sa.Column('connector', sa.String(length=100), nullable=False),
    sa.Column('event_id', sa.String(length=200), nullable=False),
    sa.Column('received_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('connector', 'event_id')
    )


def downgrade() -> None:
    op.drop_table('push_events')
