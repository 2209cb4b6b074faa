"""Program subscriptions: pending lookups of the server's affected datasets, one per activation."""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0004_affected"
down_revision: str | None = "0003_lists"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.create_table(
        "affected_lookups",
        sa.Column("activation_id", sa.Integer, sa.ForeignKey("activations.id"), primary_key=True),
        sa.Column("source_key", sa.String(512), nullable=False),
        sa.Column("context", sa.String(255), nullable=False),
        sa.Column("previous_context", sa.String(255), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("next_attempt_at", sa.DateTime, nullable=False),
        sa.Column("last_error", sa.Text, nullable=True),
        sa.Column("affected", sa.Integer, nullable=True),
        sa.Column("created_at", sa.DateTime, nullable=False),
        sa.Column("updated_at", sa.DateTime, nullable=False),
    )
    op.create_index("ix_affected_lookups_status_next", "affected_lookups", ["status", "next_attempt_at"])


def downgrade() -> None:
    op.drop_index("ix_affected_lookups_status_next", "affected_lookups")
    op.drop_table("affected_lookups")
