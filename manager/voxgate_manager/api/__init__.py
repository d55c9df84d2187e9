"""The manager's HTTP surfaces that it answers itself (no model server involved)."""
