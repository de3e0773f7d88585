"""mailhooks: an email platform's event hub (web process)."""

__version__ = "0.1.0"
