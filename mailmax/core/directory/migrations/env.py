"""alembic environment: migrate on the connection MailMax hands over, never from a URL."""

from alembic import context

from mailmax.core.directory.schema import metadata

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError(
        "the directory migrations run from MailMax (SQLDirectory.migrate or `mailmax db upgrade`), "
        "not from the alembic command line"
    )
context.configure(connection=connection, target_metadata=metadata, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
