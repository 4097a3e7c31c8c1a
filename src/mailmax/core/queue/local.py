"""Local delivery of one recipient: resolve, expand, choose a folder, store in the Maildir."""
