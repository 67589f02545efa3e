"""deployments: one row per start of a revision; who runs a build; who moved a space's stage last; frozen

Revision ID: 0004_deployments
Revises: 0006_lfs_datasets
Create Date: 2026-12-07 17:00:00.000000
"""
from alembic import op
import sqlalchemy as sa


revision = '0004_deployments'
down_revision = '0006_lfs_datasets'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('deployments',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('space_id', sa.Integer(), nullable=False),
    sa.Column('build_id', sa.Integer(), nullable=True),
    sa.Column('revision', sa.String(length=40), nullable=False),
    sa.Column('artifact', sa.JSON(), nullable=True),
    sa.Column('handle', sa.JSON(), nullable=True),
    sa.Column('job_id', sa.String(length=64), nullable=True),
    sa.Column('runner', sa.String(length=200), nullable=True),
    sa.Column('outcome', sa.String(length=20), nullable=False),
    sa.Column('error', sa.Text(), nullable=False),
    sa.Column('started_at', sa.DateTime(), nullable=False),
    sa.Column('ready_at', sa.DateTime(), nullable=True),
    sa.Column('drained_at', sa.DateTime(), nullable=True),
    sa.ForeignKeyConstraint(['space_id'], ['spaces.id'], ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['build_id'], ['builds.id'], ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('deployments', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_deployments_space_id'), ['space_id'], unique=False)
    with op.batch_alter_table('builds', schema=None) as batch_op:
        batch_op.add_column(sa.Column('runner', sa.String(length=200), nullable=True))
        batch_op.add_column(sa.Column('attempts', sa.Integer(), nullable=False, server_default='0'))
    with op.batch_alter_table('spaces', schema=None) as batch_op:
        batch_op.add_column(sa.Column('stage_by', sa.String(length=40), nullable=False, server_default=''))
        batch_op.add_column(sa.Column('stage_at', sa.DateTime(), nullable=True))
        batch_op.add_column(sa.Column('frozen', sa.Boolean(), nullable=False, server_default=sa.false()))


def downgrade() -> None:
    with op.batch_alter_table('builds', schema=None) as batch_op:
        batch_op.drop_column('attempts')
        batch_op.drop_column('runner')
    with op.batch_alter_table('spaces', schema=None) as batch_op:
        batch_op.drop_column('frozen')
        batch_op.drop_column('stage_by')
        batch_op.drop_column('stage_at')
    with op.batch_alter_table('deployments', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_deployments_space_id'))
    op.drop_table('deployments')
