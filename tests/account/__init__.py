"""The security page (/account/security): its page, its changes, its rules."""
