"""Alembic's entry to the control store's migrations: always on a connection dripfeed opened, in a
transaction dripfeed holds (store.py's `ControlStore._bring_to_head`), never from a URL of its own."""

from alembic import context

from resources.control.store import VERSION_TABLE, metadata

connection = context.config.attributes["connection"]
context.configure(
    connection=connection,
    target_metadata=metadata,
    version_table=VERSION_TABLE,
    # SQLite alters a table by copying it: autogenerate writes batch operations; a revision written by
    # hand wraps its ALTERs in op.batch_alter_table.
    render_as_batch=True,
)
with context.begin_transaction():
    context.run_migrations()
