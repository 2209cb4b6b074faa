"""Mailing lists: members (with bounce scores), pending confirmation tokens, and the request log."""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0003_lists"
down_revision: str | None = "0002_upstream"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.create_table(
        "list_members",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("list_name", sa.String(255), nullable=False),
        sa.Column("address", sa.String(320), nullable=False),
        sa.Column("subscriber", sa.String(255), nullable=False),
        sa.Column("origin", sa.String(16), nullable=False),
        sa.Column("bounce_score", sa.Integer, nullable=False),
        sa.Column("last_bounce_at", sa.DateTime, nullable=True),
        sa.Column("disabled_at", sa.DateTime, nullable=True),
        sa.Column("warnings_sent", sa.Integer, nullable=False),
        sa.Column("last_warning_at", sa.DateTime, nullable=True),
        sa.Column("created_at", sa.DateTime, nullable=False),
        sa.Column("updated_at", sa.DateTime, nullable=False),
        sa.UniqueConstraint("list_name", "address", name="uq_list_members_list_address"),
    )
    op.create_table(
        "list_tokens",
        sa.Column("digest", sa.String(64), primary_key=True),
        sa.Column("list_name", sa.String(255), nullable=False),
        sa.Column("address", sa.String(320), nullable=False),
        sa.Column("action", sa.String(16), nullable=False),
        sa.Column("nonce", sa.String(64), nullable=False),
        sa.Column("expires_at", sa.DateTime, nullable=False),
        sa.Column("created_at", sa.DateTime, nullable=False),
        sa.Column("used_at", sa.DateTime, nullable=True),
    )
    op.create_index("ix_list_tokens_expires", "list_tokens", ["expires_at"])
    op.create_table(
        "list_requests",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("at", sa.DateTime, nullable=False),
        sa.Column("list_name", sa.String(255), nullable=False),
        sa.Column("address", sa.String(320), nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("outcome", sa.String(32), nullable=False),
        sa.Column("replied", sa.Boolean, nullable=False),
        sa.Column("detail", sa.Text, nullable=True),
    )
    op.create_index("ix_list_requests_address_at", "list_requests", ["address", "at"])
    op.create_index("ix_list_requests_at", "list_requests", ["at"])


def downgrade() -> None:
    op.drop_table("list_requests")
    op.drop_table("list_tokens")
    op.drop_table("list_members")
