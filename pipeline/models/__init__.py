"""Model files (resolved offline, checksummed) and the backends that run them."""
