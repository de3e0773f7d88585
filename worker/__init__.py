"""mailhooks worker process (arq)."""
