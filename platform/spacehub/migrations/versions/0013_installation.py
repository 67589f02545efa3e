"""installation: the database's own id, so a command can tell whether a running platform uses this database

Revision ID: 0013_installation
Revises: 0004_deployments
Create Date: 2026-12-07 20:30:00.000000
"""
import uuid

from alembic import op
import sqlalchemy as sa


revision = '0013_installation'
down_revision = '0004_deployments'
branch_labels = None
depends_on = None


def upgrade() -> None:
    table = op.create_table('installation',
    sa.Column('id', sa.String(length=32), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    op.bulk_insert(table, [{'id': uuid.uuid4().hex}])


def downgrade() -> None:
    op.drop_table('installation')
