"""Small real plugins that end-to-end tests load into a running server by dotted path."""
