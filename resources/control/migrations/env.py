"""Alembic's entry to the control store's migrations: always on a connection dripfeed opened, in a
transaction dripfeed holds (store.py's `ControlStore._bring_to_head`), never from a URL of its own."""

from alembic import context

from resources.control.store import VERSION_TABLE, metadata

connection = context.config.attributes["connection"]
context.configure(
    connection=connection,
    target_metadata=metadata,
    version_table=VERSION_TABLE,
    render_as_batch=True,  # SQLite alters a table by copying it: Alembic's batch mode does that
)
with context.begin_transaction():
    context.run_migrations()
