"""event log: the durable outbox of the event bus, and the last sequence number of each stream

Revision ID: 0002_event_log
Revises: 0001_initial
Create Date: 2026-12-03
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0002_event_log"
down_revision: str | Sequence[str] | None = "0001_initial"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

KEY = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
STREAMS = ("calls", "queues", "agents", "users", "config")


def upgrade() -> None:
    op.create_table(
        "event_log",
        sa.Column("id", KEY, autoincrement=True, nullable=False),
        sa.Column("stream", sa.String(), nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("tenant", sa.String(), nullable=False),
        sa.Column("at", sa.Double(), nullable=False),
        sa.Column("name", sa.String(), nullable=False),
        sa.Column("body", JSON, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_event_log"),
    )
    op.create_index("ix_event_log_stream_seq", "event_log", ["stream", "seq"], unique=True)
    op.create_index("ix_event_log_tenant_stream_seq", "event_log", ["tenant", "stream", "seq"])
    streams = op.create_table(
        "event_streams",
        sa.Column("stream", sa.String(), nullable=False),
        sa.Column("last", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("stream", name="pk_event_streams"),
    )
    op.bulk_insert(streams, [{"stream": s, "last": 0} for s in STREAMS])


def downgrade() -> None:
    op.drop_table("event_streams")
    op.drop_index("ix_event_log_tenant_stream_seq", table_name="event_log")
    op.drop_index("ix_event_log_stream_seq", table_name="event_log")
    op.drop_table("event_log")
