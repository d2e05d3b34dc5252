"""The rule set (name@version) that decided each order

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-03 19:20:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0011'
down_revision: str | None = '0010'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('orders') as batch:
        batch.add_column(sa.Column('ruleset_version', sa.String(length=120), nullable=False, server_default=''))


def downgrade() -> None:
    with op.batch_alter_table('orders') as batch:
        batch.drop_column('ruleset_version')
