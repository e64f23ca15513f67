# oicp-bridge: OCPI EVSE status in, Hubject OICP out (docs/deploy.md, Docker).
#   docker build -t oicp-bridge .
#   docker run -v oicp-bridge-data:/var/lib/oicp-bridge -v ./oicp-bridge.toml:/etc/oicp-bridge/oicp-bridge.toml:ro \
#              -p 8080:8080 oicp-bridge
#
# The base image is pinned by version and digest: python:3.11.11-slim-bookworm (Debian 12). The digest is the
# one public Dockerfiles pin for that tag; it could not be checked where this file was written (no registry
# reachable): check it with `docker buildx imagetools inspect python:3.11.11-slim-bookworm` and update both
# lines together when moving to a newer Python.
ARG BASE=python:3.11.11-slim-bookworm@sha256:081075da77b2b55c23c088251026fb69a7b2bf92471e491ff5fd75c192fd38e5

FROM ${BASE} AS build
WORKDIR /src
# 1. the dependencies, from the pinned constraints only: this layer is rebuilt when they change, not when
#    the source does
COPY deploy/constraints.txt ./
RUN pip wheel --no-cache-dir --wheel-dir /deps -r constraints.txt
# 2. the bridge itself
COPY pyproject.toml README.md LICENSE ./
COPY oicp ./oicp
COPY bridge ./bridge
COPY config ./config
RUN pip wheel --no-cache-dir --no-deps --wheel-dir /app .

FROM ${BASE}
LABEL org.opencontainers.image.title="oicp-bridge" \
      org.opencontainers.image.description="Publishes OCPI EVSE status to Hubject (OICP 2.3 REST / 2.2 SOAP)" \
      org.opencontainers.image.licenses="Apache-2.0"
RUN useradd --system --uid 10001 --home-dir /var/lib/oicp-bridge --shell /usr/sbin/nologin oicp-bridge \
    && mkdir -p /var/lib/oicp-bridge /etc/oicp-bridge \
    && chown oicp-bridge /var/lib/oicp-bridge && chmod 0700 /var/lib/oicp-bridge
COPY --from=build /deps /deps
RUN pip install --no-cache-dir --no-index /deps/*.whl && rm -rf /deps
COPY --from=build /app /app
RUN pip install --no-cache-dir --no-index --no-deps /app/*.whl && rm -rf /app \
    && oicp-bridge example-config > /etc/oicp-bridge/example.toml
ENV OICP_BRIDGE_CONFIG=/etc/oicp-bridge/oicp-bridge.toml \
    OICP_BRIDGE_STORE__URL=sqlite:////var/lib/oicp-bridge/bridge.db \
    PYTHONUNBUFFERED=1
USER oicp-bridge
# the store and its WAL files hold the OCPI tokens the bridge presents to CPOs
VOLUME ["/var/lib/oicp-bridge"]
# 8080: OCPI receiver ([ocpi.receiver] listen = "0.0.0.0:8080"); 8081: admin (loopback by default)
EXPOSE 8080
# reads [admin] listen from the same configuration (file and environment) as `run`
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 CMD ["oicp-bridge", "health"]
STOPSIGNAL SIGTERM
ENTRYPOINT ["oicp-bridge"]
CMD ["run"]
