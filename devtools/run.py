"""`make run`: Redis (private and durable, or an in-process stand-in), then web and worker.

With REDIS_URL set, that Redis is used and nothing else is started.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import sys
from pathlib import Path

from honcho.manager import Manager
from honcho.printer import Printer

from devtools.procfile import ROOT, process_env, procfile_commands
from devtools.redis_server import PrivateRedis, RedisServerError

# MAILHOOKS_DATA_DIR moves it (the tests use a temporary folder).
DATA = Path(os.environ.get("MAILHOOKS_DATA_DIR", ROOT / ".data"))


def dev_api_key(name: str = "dev-api-key", prefix: str = "dev_") -> str:
    """A development key, kept in .data/ so it survives restarts."""
    path = DATA / name
    if not path.exists():
        DATA.mkdir(exist_ok=True)
        path.write_text(prefix + secrets.token_urlsafe(24) + "\n")
        path.chmod(0o600)
    return path.read_text().strip()


def banner(lines: list[str]) -> None:
    width = max(len(line) for line in lines) + 4
    print("=" * width)
    for line in lines:
        print(f"  {line}")
    print("=" * width, flush=True)


def main() -> int:
    overrides: dict[str, str] = {}
    notes: list[str] = []
    with contextlib.ExitStack() as stack:
        if not os.environ.get("REDIS_URL"):
            try:
                server = stack.enter_context(PrivateRedis(DATA / "redis", durable=True))
                overrides["REDIS_URL"] = server.url
                notes.append(f"Redis: private redis-server at {server.url} (AOF in .data/redis)")
            except RedisServerError as exc:
                from devtools.fake_redis import start_fake_redis

                url, fake = start_fake_redis()
                stack.callback(fake.server_close)
                stack.callback(fake.shutdown)
                overrides["REDIS_URL"] = url
                notes += [
                    f"WARNING: {exc}; using an IN-PROCESS fakeredis at {url}.",
                    "WARNING: NOT DURABLE: every webhook and event is lost when this stops.",
                    "WARNING: install redis-server (or set REDIS_URL) for real use.",
                ]
        if not os.environ.get("API_KEYS"):
            overrides["API_KEYS"] = dev_api_key()
        if not os.environ.get("ADMIN_API_KEYS"):
            overrides["ADMIN_API_KEYS"] = dev_api_key("dev-admin-key", "dev_admin_")
        if not os.environ.get("PORTAL_SECRET"):
            overrides["PORTAL_SECRET"] = dev_api_key("dev-portal-secret", "dev_portal_")
        overrides.setdefault("PORT", os.environ.get("PORT", "8000"))
        # Tracking links that work on this machine (docs/tracking.md), unless configured.
        if not os.environ.get("PUBLIC_URL") and not os.environ.get("TRACKING_SIGNING_KEY"):
            overrides["PUBLIC_URL"] = f"http://127.0.0.1:{overrides['PORT']}"
            overrides["TRACKING_SIGNING_KEY"] = dev_api_key("dev-tracking-key", "dev_tracking_")
        # Development only: providers without a configured secret are accepted unsigned.
        overrides.setdefault(
            "ALLOW_UNSIGNED_INBOUND", os.environ.get("ALLOW_UNSIGNED_INBOUND", "true")
        )
        api_key = overrides.get("API_KEYS", os.environ.get("API_KEYS", "")).split(",")[0]
        admin_key = overrides.get("ADMIN_API_KEYS", os.environ.get("ADMIN_API_KEYS", ""))
        banner(
            [
                f"mailhooks: http://127.0.0.1:{overrides['PORT']}  (API docs at /docs)",
                f"API key:   {api_key}  (the default account's)",
                f"Admin key: {admin_key.split(',')[0]}  (accounts: /api/accounts)",
                "Portal:    POST /api/accounts/acc_default/portal-links (docs/portal.md)",
                *notes,
                "Ctrl-C stops everything.",
            ]
        )
        manager = Manager(Printer(sys.stdout))
        env = process_env(overrides)
        for name, command in procfile_commands().items():
            manager.add_process(name, command, env=env, cwd=str(ROOT))
        manager.loop()
        return int(manager.returncode or 0)


if __name__ == "__main__":
    sys.exit(main())
