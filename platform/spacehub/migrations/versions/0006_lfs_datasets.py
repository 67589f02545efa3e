"""lfs and datasets: who may commit which large-file object; metadata derived from repo files

Revision ID: 0006_lfs_datasets
Revises: 0005_security
Create Date: 2026-12-07 17:00:00.000000
"""
from alembic import op
import sqlalchemy as sa


revision = '0006_lfs_datasets'
down_revision = '0005_security'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('lfs_grants',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('oid', sa.String(length=64), nullable=False),
    sa.Column('user_id', sa.Integer(), nullable=False),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('oid', 'user_id')
    )
    with op.batch_alter_table('lfs_grants', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_lfs_grants_oid'), ['oid'], unique=False)
        batch_op.create_index(batch_op.f('ix_lfs_grants_user_id'), ['user_id'], unique=False)
    with op.batch_alter_table('spaces', schema=None) as batch_op:
        batch_op.add_column(sa.Column('meta', sa.JSON(), nullable=False, server_default='{}'))


def downgrade() -> None:
    with op.batch_alter_table('spaces', schema=None) as batch_op:
        batch_op.drop_column('meta')
    with op.batch_alter_table('lfs_grants', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_lfs_grants_user_id'))
        batch_op.drop_index(batch_op.f('ix_lfs_grants_oid'))
    op.drop_table('lfs_grants')
