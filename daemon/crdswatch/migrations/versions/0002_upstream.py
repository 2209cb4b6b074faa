"""The bridge: upstream list posts, archive feed validators and MAST events."""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0002_upstream"
down_revision: str | None = "0001"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.create_table(
        "upstream_posts",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("upstream", sa.String(255), nullable=False),
        sa.Column("message_id", sa.String(998), nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("post_date", sa.String(64), nullable=False),
        sa.Column("post", sa.JSON, nullable=False),
        sa.Column("names", sa.Text, nullable=False),
        sa.Column("received_at", sa.DateTime, nullable=False),
        sa.UniqueConstraint("upstream", "message_id", name="uq_upstream_posts_message"),
    )
    op.create_index("ix_upstream_posts_date", "upstream_posts", ["post_date"])
    op.create_table(
        "upstream_feeds",
        sa.Column("upstream", sa.String(255), primary_key=True),
        sa.Column("etag", sa.String(1024), nullable=True),
        sa.Column("last_modified", sa.String(255), nullable=True),
        sa.Column("updated_at", sa.DateTime, nullable=False),
    )
    op.create_table(
        "mast_events",
        sa.Column("event_id", sa.String(255), primary_key=True),
        sa.Column("upstream", sa.String(255), nullable=False),
        sa.Column("program", sa.String(64), nullable=False),
        sa.Column("event_type", sa.String(32), nullable=False),
        sa.Column("archived_date", sa.String(64), nullable=False),
        sa.Column("received_at", sa.DateTime, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("mast_events")
    op.drop_table("upstream_feeds")
    op.drop_index("ix_upstream_posts_date", "upstream_posts")
    op.drop_table("upstream_posts")
