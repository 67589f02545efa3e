"""lifecycle: crash backoff state and retired (draining) apps

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-01 09:00:00.000000
"""
from alembic import op
import sqlalchemy as sa


revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('retired_apps',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('space_id', sa.Integer(), nullable=False),
    sa.Column('handle', sa.JSON(), nullable=False),
    sa.Column('retired_at', sa.DateTime(), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('retired_apps', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_retired_apps_space_id'), ['space_id'], unique=False)
    with op.batch_alter_table('spaces', schema=None) as batch_op:
        batch_op.add_column(sa.Column('restart_at', sa.DateTime(), nullable=True))
        batch_op.add_column(sa.Column('crashed_at', sa.DateTime(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('spaces', schema=None) as batch_op:
        batch_op.drop_column('crashed_at')
        batch_op.drop_column('restart_at')
    with op.batch_alter_table('retired_apps', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_retired_apps_space_id'))
    op.drop_table('retired_apps')
