"""Initial schema: cursors, seen activations, subscribers, the outbox and its attempts."""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | None = None
depends_on: str | None = None

# Times are naive UTC here on purpose: the store's UTCDateTime type converts at the edge, and
# naive columns compare the same way on SQLite (text) and PostgreSQL (timestamp).


def upgrade() -> None:
    op.create_table(
        "cursors",
        sa.Column("source_key", sa.String(512), primary_key=True),
        sa.Column("context", sa.String(255), nullable=False),
        sa.Column("activation_date", sa.String(64), nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("updated_at", sa.DateTime, nullable=False),
    )
    op.create_table(
        "activations",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("source_key", sa.String(512), nullable=False),
        sa.Column("context", sa.String(255), nullable=False),
        sa.Column("activation_date", sa.String(64), nullable=False),
        sa.Column("description", sa.Text, nullable=False),
        sa.Column("previous_context", sa.String(255), nullable=True),
        sa.Column("diff", sa.JSON, nullable=True),
        sa.Column("seen_at", sa.DateTime, nullable=False),
        sa.UniqueConstraint("source_key", "context", "activation_date", name="uq_activations_source_context_date"),
    )
    op.create_table(
        "subscribers",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("config", sa.JSON, nullable=False),
        sa.Column("created_at", sa.DateTime, nullable=False),
        sa.Column("updated_at", sa.DateTime, nullable=False),
        sa.UniqueConstraint("name", name="uq_subscribers_name"),
    )
    _create_outbox()


def _create_outbox() -> None:
    op.create_table(
        "deliveries",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("idempotency_key", sa.String(64), nullable=False),
        sa.Column("activation_id", sa.Integer, sa.ForeignKey("activations.id"), nullable=True),
        sa.Column("source_key", sa.String(512), nullable=False),
        sa.Column("context", sa.String(255), nullable=False),
        sa.Column("subscriber", sa.String(255), nullable=False),
        sa.Column("channel", sa.String(255), nullable=False),
        sa.Column("payload", sa.JSON, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("max_attempts", sa.Integer, nullable=False),
        sa.Column("next_attempt_at", sa.DateTime, nullable=False),
        sa.Column("lease_owner", sa.String(255), nullable=True),
        sa.Column("lease_expires_at", sa.DateTime, nullable=True),
        sa.Column("claimed_at", sa.DateTime, nullable=True),
        sa.Column("last_error", sa.Text, nullable=True),
        sa.Column("detail", sa.Text, nullable=True),
        sa.Column("created_at", sa.DateTime, nullable=False),
        sa.Column("updated_at", sa.DateTime, nullable=False),
        sa.Column("sent_at", sa.DateTime, nullable=True),
        sa.UniqueConstraint("idempotency_key", name="uq_deliveries_idempotency_key"),
    )
    op.create_index("ix_deliveries_status_next", "deliveries", ["status", "next_attempt_at"])
    op.create_index("ix_deliveries_status_lease", "deliveries", ["status", "lease_expires_at"])
    op.create_table(
        "delivery_attempts",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column(
            "delivery_id",
            sa.Integer,
            sa.ForeignKey("deliveries.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("attempt", sa.Integer, nullable=False),
        sa.Column("worker_id", sa.String(255), nullable=False),
        sa.Column("started_at", sa.DateTime, nullable=True),
        sa.Column("finished_at", sa.DateTime, nullable=False),
        sa.Column("outcome", sa.String(16), nullable=False),
        sa.Column("error", sa.Text, nullable=True),
        sa.Column("detail", sa.Text, nullable=True),
    )
    op.create_index("ix_delivery_attempts_delivery", "delivery_attempts", ["delivery_id"])


def downgrade() -> None:
    op.drop_table("delivery_attempts")
    op.drop_table("deliveries")
    op.drop_table("subscribers")
    op.drop_table("activations")
    op.drop_table("cursors")
