"""Delivery status notifications (RFC 3464) for failed recipients (Q4)."""
