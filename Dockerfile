# voucherify-fanout: the webhook receiver as a small, non-root image.
#
#   docker build -t voucherify-fanout .
#   docker run -e FANOUT_REDIS_URL=redis://redis:6379/0 -e FANOUT_SECRETS=... -p 8000:8000 voucherify-fanout
#
# Configuration comes from the environment (every FANOUT_* variable of the README);
# the image only sets the listen address. Dependencies are the pinned set of
# requirements.lock; nothing is resolved at build time.

# --- build: a virtualenv with the pinned dependencies and the project -------
FROM python:3.11-slim AS build

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1

RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH

# Dependencies first, so editing the code does not reinstall them.
COPY requirements.lock /tmp/requirements.lock
RUN pip install --no-cache-dir --no-deps -r /tmp/requirements.lock

# The project itself, built with a pinned setuptools and no dependency resolution.
WORKDIR /src
COPY pyproject.toml README.md ./
COPY service ./service
RUN pip install --no-cache-dir setuptools==84.2.1 \
    && pip install --no-cache-dir --no-deps --no-build-isolation . \
    && pip uninstall --yes setuptools \
    && python -m compileall -q /opt/venv/lib
# Every requirement of every installed package is there, at a version it accepts, for
# the base image's Python (requirements.lock carries markers, e.g. async-timeout below
# 3.11.3): a missing one fails the build here, not the first start.
RUN pip check

# --- runtime: the virtualenv on a clean slim base, as an unprivileged user ---
FROM python:3.11-slim

LABEL org.opencontainers.image.title="voucherify-fanout" \
      org.opencontainers.image.description="Voucherify async-action webhooks to typed Redis Streams events" \
      org.opencontainers.image.licenses="MIT"

RUN groupadd --system --gid 10001 fanout \
    && useradd --system --uid 10001 --gid fanout --no-create-home --home-dir /app \
       --shell /usr/sbin/nologin fanout

COPY --from=build /opt/venv /opt/venv
# The example consumer, for the compose stack's "consumer" service.
COPY examples/consume.py /app/examples/consume.py

WORKDIR /app
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    FANOUT_HOST=0.0.0.0 \
    FANOUT_PORT=8000 \
    FANOUT_DATA_DIR=/tmp/fanout

USER 10001:10001
EXPOSE 8000

# slim has no curl: ask /healthz with the standard library.
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('FANOUT_PORT', '8000'), timeout=2)"]

ENTRYPOINT ["fanout"]
CMD ["serve"]
