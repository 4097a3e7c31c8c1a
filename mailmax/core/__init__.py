"""The MailMax server core: configuration, directory, spool, queue, protocols, plugin layer."""
