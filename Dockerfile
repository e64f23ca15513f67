# oicp-bridge: OCPI EVSE status in, Hubject OICP out.
#   docker build -t oicp-bridge .
#   docker run -v oicp-bridge-data:/var/lib/oicp-bridge -v ./oicp-bridge.toml:/etc/oicp-bridge/oicp-bridge.toml:ro \
#              -p 8080:8080 oicp-bridge
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md LICENSE ./
COPY oicp ./oicp
COPY bridge ./bridge
RUN pip wheel --no-cache-dir --wheel-dir /wheels .

FROM python:3.11-slim
LABEL org.opencontainers.image.title="oicp-bridge" \
      org.opencontainers.image.description="Publishes OCPI EVSE status to Hubject (OICP 2.3 REST / 2.2 SOAP)" \
      org.opencontainers.image.licenses="Apache-2.0"
RUN useradd --system --uid 10001 --home-dir /var/lib/oicp-bridge --shell /usr/sbin/nologin oicp-bridge \
    && mkdir -p /var/lib/oicp-bridge /etc/oicp-bridge \
    && chown oicp-bridge /var/lib/oicp-bridge
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir /wheels/*.whl && rm -rf /wheels
COPY config/example.toml /etc/oicp-bridge/example.toml
ENV OICP_BRIDGE_CONFIG=/etc/oicp-bridge/oicp-bridge.toml \
    OICP_BRIDGE_STORE__URL=sqlite:////var/lib/oicp-bridge/bridge.db \
    PYTHONUNBUFFERED=1
USER oicp-bridge
VOLUME ["/var/lib/oicp-bridge"]
# 8080: OCPI receiver ([ocpi.receiver] listen = "0.0.0.0:8080"); 8081: admin (loopback by default)
EXPOSE 8080
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import os,sys,urllib.request; a=os.environ.get('OICP_BRIDGE_ADMIN__LISTEN','127.0.0.1:8081'); sys.exit(0 if urllib.request.urlopen(f'http://{a}/health', timeout=4).status == 200 else 1)"]
STOPSIGNAL SIGTERM
ENTRYPOINT ["oicp-bridge"]
CMD ["run"]
