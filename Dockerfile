FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    DATABASE_PATH=/data/bot.sqlite3

RUN useradd --create-home --uid 10001 videobot \
    && mkdir -p /data && chown videobot:videobot /data

WORKDIR /app
COPY pyproject.toml README.md ./
COPY bot ./bot
COPY cogs ./cogs
RUN pip install .

USER videobot
VOLUME ["/data"]
# SIGTERM lets the bot stop its tracker and close the database cleanly.
STOPSIGNAL SIGTERM
CMD ["python", "-m", "bot"]
