"""What every bench shares: loopback HTTP helpers and how a result is reported."""
