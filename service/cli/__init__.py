"""`mailhooks`, the operators' command line: status, accounts and keys, webhooks, delivery
retries and recovery, dead letters. It reads the same environment as the processes
(`Config.from_env`, REDIS_URL) and talks to Redis through the stores, never over HTTP, so it
works wherever the processes run (`heroku run mailhooks status`). An edge, like the web and
the worker: it uses storage and the core, and nothing uses it."""
