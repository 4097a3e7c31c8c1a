"""End-to-end tests of the built-in plugins over real SMTP sessions."""
