"""security: token expiry, space secrets sealed at rest, stored cards within their cap

Revision ID: 0005_security
Revises: 0003
Create Date: 2026-12-07 17:00:00.000000

Secrets stored in plain text before this revision are sealed here, with the key file the platform passes in
(`migrate(url, secrets_key_file=...)`). Cards stored before front matter had limits (a "billion laughs" README
stored tens of megabytes) are emptied when over the cap; the space's next build reads its README again.
"""
from pathlib import Path

import sqlalchemy as sa
from alembic import context, op

revision = '0005_security'
down_revision = '0003'
branch_labels = None
depends_on = None

_variables = sa.table('space_variables', sa.column('id', sa.Integer), sa.column('space_id', sa.Integer),
                      sa.column('key', sa.String), sa.column('value', sa.Text), sa.column('secret', sa.Boolean))
_spaces = sa.table('spaces', sa.column('id', sa.Integer), sa.column('card_data', sa.JSON))


def upgrade() -> None:
    _seal_plaintext_secrets()  # first: when it cannot (no key file given), nothing has changed yet
    with op.batch_alter_table('tokens', schema=None) as batch_op:
        batch_op.add_column(sa.Column('expires_at', sa.DateTime(), nullable=True))
    _empty_oversized_cards()


def _seal_plaintext_secrets() -> None:
    from spacehub import crypto  # the sealing format is the platform's own

    conn = op.get_bind()
    rows = conn.execute(sa.select(_variables.c.id, _variables.c.space_id, _variables.c.key, _variables.c.value)
                        .where(_variables.c.secret.is_(True))).all()
    plain = [row for row in rows if not crypto.is_sealed(row.value)]
    if not plain:
        return
    key_file = context.config.attributes.get('secrets_key_file')
    if key_file is None:
        raise RuntimeError(f"{len(plain)} space secrets are stored in plain text and no secrets key file was "
                           "given to seal them: run this migration through spacehub (migrate(url, "
                           "secrets_key_file=...)), not the alembic command")
    box = crypto.load_box_file(Path(key_file))
    for row in plain:
        conn.execute(_variables.update().where(_variables.c.id == row.id)
                     .values(value=crypto.seal_value(box, row.space_id, row.key, row.value)))


def _empty_oversized_cards() -> None:
    from spacehub.spaceconfig import MAX_CARD_BYTES

    size = sa.func.length(sa.cast(_spaces.c.card_data, sa.Text))
    op.get_bind().execute(_spaces.update().where(size > MAX_CARD_BYTES).values(card_data={}))


def downgrade() -> None:
    # Sealed secrets stay sealed: opening them here would write them back in plain text.
    with op.batch_alter_table('tokens', schema=None) as batch_op:
        batch_op.drop_column('expires_at')
