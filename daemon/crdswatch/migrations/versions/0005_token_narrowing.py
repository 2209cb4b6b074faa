"""Mailing lists: a pending subscribe carries the narrowing chosen on the web form."""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0005_token_narrowing"
down_revision: str | None = "0004_affected"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    with op.batch_alter_table("list_tokens") as batch:
        batch.add_column(sa.Column("narrowing", sa.JSON, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("list_tokens") as batch:
        batch.drop_column("narrowing")
