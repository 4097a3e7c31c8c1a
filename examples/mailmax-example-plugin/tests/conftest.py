"""The plugin author's fixtures come from MailMax itself."""

pytest_plugins = ["mailmax.testing"]
