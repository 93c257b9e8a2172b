# One image for every service of compose.yaml: the worker, beat, Flower and the HTTP API.
FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
WORKDIR /app
COPY setup.cfg pyproject.toml README.md ./
COPY config_core ./config_core
COPY workers ./workers
COPY connectors ./connectors
COPY capabilities ./capabilities
COPY apgcfg ./apgcfg
RUN pip install --no-cache-dir . && useradd --create-home --uid 10001 apgcfg
USER apgcfg
CMD ["celery", "-A", "workers", "worker", "--loglevel", "INFO"]
