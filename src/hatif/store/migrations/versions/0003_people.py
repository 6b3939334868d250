"""people: web users (argon2id hashes, roles), their sessions and API tokens, failed sign-ins, the audit log

Revision ID: 0003_people
Revises: 0002_event_log
Create Date: 2026-12-03
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0003_people"
down_revision: str | Sequence[str] | None = "0002_event_log"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Spelled out here rather than imported from hatif.store.models: a revision is the schema as it was.
KEY = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
TIME = sa.DateTime(timezone=True)
JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def upgrade() -> None:
    op.create_table(
        "users",
        sa.Column("id", KEY, autoincrement=True, nullable=False),
        sa.Column("tenant", sa.String(), nullable=False),
        sa.Column("name", sa.String(), nullable=False),
        sa.Column("role", sa.String(), nullable=False),
        sa.Column("password_hash", sa.String(), nullable=False),
        sa.Column("disabled", sa.Boolean(), nullable=False),
        sa.Column("created", TIME, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_users"),
    )
    op.create_index("ix_users_tenant_name", "users", ["tenant", "name"], unique=True)
    op.create_table(
        "web_sessions",
        sa.Column("id", KEY, autoincrement=True, nullable=False),
        sa.Column("tenant", sa.String(), nullable=False),
        sa.Column("user", KEY, nullable=False),
        sa.Column("secret_sha256", sa.String(), nullable=False),
        sa.Column("created", TIME, nullable=False),
        sa.Column("last_seen", TIME, nullable=False),
        sa.ForeignKeyConstraint(["user"], ["users.id"], name="fk_web_sessions_user", ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name="pk_web_sessions"),
    )
    op.create_index("ix_web_sessions_secret_sha256", "web_sessions", ["secret_sha256"], unique=True)
    op.create_index("ix_web_sessions_tenant_user", "web_sessions", ["tenant", "user"])
    op.create_table(
        "api_tokens",
        sa.Column("id", KEY, autoincrement=True, nullable=False),
        sa.Column("tenant", sa.String(), nullable=False),
        sa.Column("user", KEY, nullable=False),
        sa.Column("name", sa.String(), nullable=False),
        sa.Column("secret_sha256", sa.String(), nullable=False),
        sa.Column("scopes", sa.String(), nullable=False),
        sa.Column("created", TIME, nullable=False),
        sa.Column("expires", TIME, nullable=True),
        sa.Column("revoked", TIME, nullable=True),
        sa.Column("last_used", TIME, nullable=True),
        sa.ForeignKeyConstraint(["user"], ["users.id"], name="fk_api_tokens_user", ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name="pk_api_tokens"),
    )
    op.create_index("ix_api_tokens_secret_sha256", "api_tokens", ["secret_sha256"], unique=True)
    op.create_index("ix_api_tokens_tenant_user", "api_tokens", ["tenant", "user"])
    op.create_table(
        "sign_in_failures",
        sa.Column("id", KEY, autoincrement=True, nullable=False),
        sa.Column("tenant", sa.String(), nullable=False),
        sa.Column("name", sa.String(), nullable=False),
        sa.Column("at", TIME, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_sign_in_failures"),
    )
    op.create_index("ix_sign_in_failures_tenant_name_at", "sign_in_failures", ["tenant", "name", "at"])
    op.create_table(
        "audit_log",
        sa.Column("id", KEY, autoincrement=True, nullable=False),
        sa.Column("tenant", sa.String(), nullable=False),
        sa.Column("at", TIME, nullable=False),
        sa.Column("actor_id", KEY, nullable=True),
        sa.Column("actor", sa.String(), nullable=False),
        sa.Column("action", sa.String(), nullable=False),
        sa.Column("target", sa.String(), nullable=False),
        sa.Column("address", sa.String(), nullable=False),
        sa.Column("detail", JSON, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_audit_log"),
    )
    op.create_index("ix_audit_log_tenant_at", "audit_log", ["tenant", "at"])


def downgrade() -> None:
    op.drop_index("ix_audit_log_tenant_at", table_name="audit_log")
    op.drop_table("audit_log")
    op.drop_index("ix_sign_in_failures_tenant_name_at", table_name="sign_in_failures")
    op.drop_table("sign_in_failures")
    op.drop_index("ix_api_tokens_tenant_user", table_name="api_tokens")
    op.drop_index("ix_api_tokens_secret_sha256", table_name="api_tokens")
    op.drop_table("api_tokens")
    op.drop_index("ix_web_sessions_tenant_user", table_name="web_sessions")
    op.drop_index("ix_web_sessions_secret_sha256", table_name="web_sessions")
    op.drop_table("web_sessions")
    op.drop_index("ix_users_tenant_name", table_name="users")
    op.drop_table("users")
