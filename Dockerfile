# chathub in a container: the wheel is built in one stage and installed into a slim
# runtime in another. Not run on chathub's own machines (no container engine there);
# the wheel it installs is the one tests/test_wheel.py builds and runs. See docs/deploy.md.
#
#   docker build -t chathub:0.1.0 .
#   docker run --rm -p 127.0.0.1:8080:8080 --stop-timeout 30 chathub:0.1.0
#
# Without CHATHUB_DATABASE_URL / CHATHUB_VALKEY_URL the container runs the embedded
# PostgreSQL and Valkey in its data volume; deploy/compose.yaml uses real services.

# -- stage 1: the wheel --------------------------------------------------------------
FROM python:3.11-slim AS build
WORKDIR /src
RUN pip install --no-cache-dir "build>=1.2"
COPY pyproject.toml README.md ./
COPY chathub ./chathub
COPY tui ./tui
RUN python -m build --wheel --outdir /dist

# -- stage 2: the runtime --------------------------------------------------------------
FROM python:3.11-slim
RUN useradd --system --uid 10001 --user-group --home-dir /var/lib/chathub --create-home chathub
COPY --from=build /dist/ /tmp/dist/
RUN pip install --no-cache-dir /tmp/dist/chathub-*.whl && rm -rf /tmp/dist
ENV CHATHUB_DATA_DIR=/var/lib/chathub \
    CHATHUB_SERVER_HOST=0.0.0.0 \
    CHATHUB_SERVER_PORT=8080 \
    PYTHONUNBUFFERED=1
USER chathub
WORKDIR /var/lib/chathub
VOLUME ["/var/lib/chathub"]
EXPOSE 8080
# 200 while the hub, Valkey and PostgreSQL are reachable; the first start runs initdb
HEALTHCHECK --interval=10s --timeout=3s --start-period=90s --retries=3 \
    CMD ["python", "-c", "import sys, urllib.request; sys.exit(urllib.request.urlopen('http://127.0.0.1:8080/healthz', timeout=2).status != 200)"]
# SIGTERM starts the graceful stop: give it drain_timeout (10 s) + 20 s (--stop-timeout 30,
# stop_grace_period in compose, terminationGracePeriodSeconds on Kubernetes).
STOPSIGNAL SIGTERM
ENTRYPOINT ["chathub"]
CMD ["serve"]
