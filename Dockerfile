# mailhooks in a container: the lock, then the checkout, as Heroku's buildpack does
# (docs/deploy.md). One image for both processes: the argument names the Procfile line,
# `docker run IMAGE web` (the default) or `docker run IMAGE worker`.
FROM python:3.11-slim

ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PORT=8000
WORKDIR /app
COPY requirements.txt ./
RUN pip install --require-hashes -r requirements.txt
COPY . ./
USER nobody
EXPOSE 8000
# Runs the Procfile's line of that name through the shell, as Heroku does (${PORT:-8000}).
ENTRYPOINT ["/bin/sh", "-c", "line=$(sed -n \"s/^$0:[[:space:]]*//p\" Procfile); [ -n \"$line\" ] || { echo \"the Procfile has no process named $0\" >&2; exit 2; }; eval \"exec $line\""]
CMD ["web"]
