"""Mail storage: Maildir++ mailboxes."""
