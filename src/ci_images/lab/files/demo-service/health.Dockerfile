# The demo service with a HEALTHCHECK: GET /health on the port the service was told (LISTEN, else PORT, else 8080).
# A short interval, so the engine reports it healthy within a second or two.
ARG BASE
FROM ${BASE}
HEALTHCHECK --interval=1s --timeout=3s --retries=3 \
    CMD port="${LISTEN:-${PORT:-8080}}"; wget -q -O /dev/null "http://127.0.0.1:${port##*:}/health" || exit 1
