"""alembic environment: migrate on the connection MailMax hands over, never from a URL."""

from alembic import context

from mailmax.core.directory.schema import metadata

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError(
        "the directory migrations run when MailMax opens the database (the server at start, "
        "or any `mailmax` command that reads it, such as `mailmax config check`), not from "
        "the alembic command line"
    )
context.configure(connection=connection, target_metadata=metadata, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
