"""initial: calls, call legs, voicemail messages, queue log

Revision ID: 0001_initial
Revises:
Create Date: 2026-05-01
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0001_initial"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Spelled out here rather than imported from hatif.store.models: a revision is the schema as it was.
KEY = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
TIME = sa.DateTime(timezone=True)
JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def upgrade() -> None:
    op.create_table(
        "calls",
        sa.Column("id", KEY, autoincrement=True, nullable=False),
        sa.Column("tenant", sa.String(), nullable=False),
        sa.Column("call_id", sa.String(), nullable=False),
        sa.Column("caller", sa.String(), nullable=False),
        sa.Column("called", sa.String(), nullable=False),
        sa.Column("started", TIME, nullable=False),
        sa.Column("answered", TIME, nullable=True),
        sa.Column("ended", TIME, nullable=True),
        sa.Column("outcome", sa.String(), nullable=False),
        sa.Column("duration", sa.Double(), nullable=False),
        sa.Column("talk_seconds", sa.Double(), nullable=False),
        sa.Column("recording", sa.String(), nullable=True),
        sa.Column("recording_sha256", sa.String(), nullable=True),
        sa.Column("variables", JSON, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_calls"),
    )
    op.create_index("ix_calls_tenant_call_id", "calls", ["tenant", "call_id"], unique=True)
    op.create_index("ix_calls_tenant_started", "calls", ["tenant", "started"])

    op.create_table(
        "call_legs",
        sa.Column("id", KEY, autoincrement=True, nullable=False),
        sa.Column("call", KEY, nullable=False),
        sa.Column("tenant", sa.String(), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("leg_id", sa.String(), nullable=False),
        sa.Column("direction", sa.String(), nullable=False),
        sa.Column("party", sa.String(), nullable=False),
        sa.Column("started", TIME, nullable=False),
        sa.Column("answered", TIME, nullable=True),
        sa.Column("ended", TIME, nullable=True),
        sa.Column("cause", sa.String(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_call_legs"),
        sa.ForeignKeyConstraint(["call"], ["calls.id"], name="fk_call_legs_call", ondelete="CASCADE"),
    )
    op.create_index("ix_call_legs_call", "call_legs", ["call", "position"])
    op.create_index("ix_call_legs_tenant_leg_id", "call_legs", ["tenant", "leg_id"])

    op.create_table(
        "voicemail_messages",
        sa.Column("id", KEY, autoincrement=True, nullable=False),
        sa.Column("tenant", sa.String(), nullable=False),
        sa.Column("mailbox", sa.String(), nullable=False),
        sa.Column("caller", sa.String(), nullable=False),
        sa.Column("caller_name", sa.String(), nullable=True),
        sa.Column("received", TIME, nullable=False),
        sa.Column("seconds", sa.Double(), nullable=False),
        sa.Column("path", sa.String(), nullable=False),
        sa.Column("sha256", sa.String(), nullable=False),
        sa.Column("call_id", sa.String(), nullable=False),
        sa.Column("heard", sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_voicemail_messages"),
    )
    op.create_index(
        "ix_voicemail_messages_tenant_mailbox", "voicemail_messages", ["tenant", "mailbox", "received"]
    )

    op.create_table(
        "queue_log",
        sa.Column("id", KEY, autoincrement=True, nullable=False),
        sa.Column("tenant", sa.String(), nullable=False),
        sa.Column("time", TIME, nullable=False),
        sa.Column("queue", sa.String(), nullable=False),
        sa.Column("call_id", sa.String(), nullable=False),
        sa.Column("event", sa.String(), nullable=False),
        sa.Column("agent", sa.String(), nullable=True),
        sa.Column("wait", sa.Double(), nullable=True),
        sa.Column("talk", sa.Double(), nullable=True),
        sa.Column("position", sa.Integer(), nullable=True),
        sa.Column("data", JSON, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_queue_log"),
    )
    op.create_index("ix_queue_log_tenant_queue_time", "queue_log", ["tenant", "queue", "time"])
    op.create_index("ix_queue_log_tenant_call_id", "queue_log", ["tenant", "call_id"])
    op.create_index("ix_queue_log_tenant_time", "queue_log", ["tenant", "time"])


def downgrade() -> None:
    op.drop_table("queue_log")
    op.drop_table("voicemail_messages")
    op.drop_table("call_legs")
    op.drop_table("calls")
