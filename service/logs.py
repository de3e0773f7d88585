"""Our loggers ("mailhooks.*") write to stderr at LOG_LEVEL, in web and worker alike.

uvicorn and arq configure only their own loggers, so without this our INFO lines would go
nowhere. Nothing logged anywhere includes a secret, an API key or a request body.
"""

from __future__ import annotations

import logging

FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def configure(level: str) -> None:
    logger = logging.getLogger("mailhooks")
    logger.setLevel(level)
    if not logger.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter(FORMAT))
        logger.addHandler(handler)
