"""config objects: each tenant's configuration as rows (queues, agents, flows, users, the dial plan, ...)

Revision ID: 0004_config_objects
Revises: 0003_people
Create Date: 2026-12-03
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0004_config_objects"
down_revision: str | Sequence[str] | None = "0003_people"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Spelled out here rather than imported from hatif.store.models: a revision is the schema as it was.
KEY = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
TIME = sa.DateTime(timezone=True)
JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def upgrade() -> None:
    op.create_table(
        "config_objects",
        sa.Column("id", KEY, autoincrement=True, nullable=False),
        sa.Column("tenant", sa.String(), nullable=False),
        sa.Column("kind", sa.String(), nullable=False),
        sa.Column("name", sa.String(), nullable=False),
        sa.Column("body", JSON, nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("updated_at", TIME, nullable=False),
        sa.Column("updated_by", sa.String(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_config_objects"),
    )
    op.create_index("ix_config_objects_tenant_kind_name", "config_objects", ["tenant", "kind", "name"], unique=True)


def downgrade() -> None:
    op.drop_index("ix_config_objects_tenant_kind_name", table_name="config_objects")
    op.drop_table("config_objects")
