"""Built-in MailMax plugins, one folder per policy feature."""
