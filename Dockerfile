FROM python:3.11-slim

# DATABASE_PATH: the database (and the heartbeat beside it) live in the /data volume. An env file can still set
# another path on purpose; .env.example leaves it unset so that it cannot.
# METRICS_HOST: metrics, when METRICS_PORT is set, must be reachable from outside the container (publish the port).
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    DATABASE_PATH=/data/bot.sqlite3 \
    METRICS_HOST=0.0.0.0

RUN groupadd --gid 10001 videobot \
    && useradd --uid 10001 --gid 10001 --no-create-home --shell /usr/sbin/nologin videobot \
    && mkdir -p /data && chown 10001:10001 /data

WORKDIR /app

# The dependencies first, in a layer of their own: a change to the bot's code does not reinstall them.
COPY pyproject.toml ./
# With the postgres extra: the image can use DATABASE_URL.
RUN python -c "import tomllib; p = tomllib.load(open('pyproject.toml', 'rb'))['project']; print('\n'.join(p['dependencies'] + p['optional-dependencies']['postgres']))" \
        > /tmp/requirements.txt \
    && pip install --no-cache-dir -r /tmp/requirements.txt \
    && rm /tmp/requirements.txt

COPY README.md ./
COPY bot ./bot
COPY cogs ./cogs
RUN pip install --no-cache-dir --no-deps .

USER 10001:10001
VOLUME ["/data"]
# Unhealthy when the bot has lost Discord, its tracker has stalled, or it stopped writing its heartbeat.
HEALTHCHECK --interval=30s --timeout=10s --start-period=60s --retries=3 CMD ["python", "-m", "bot.health"]
# SIGTERM lets the bot stop its tracker and close the database cleanly.
STOPSIGNAL SIGTERM
CMD ["python", "-m", "bot"]
