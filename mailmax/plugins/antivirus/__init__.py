"""antivirus: scan mail with clamd or an external command."""
