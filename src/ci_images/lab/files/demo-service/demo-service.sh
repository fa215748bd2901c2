#!/bin/sh
# The demo service: busybox httpd serving /www on LISTEN ([IP:]PORT), else PORT, else 8080.
# Knobs for the tests: DEMO_DELAY=N waits N seconds before listening; DEMO_EXIT=N exits with N instead;
# DEMO_NO_HEALTH=1 removes /health (404: never healthy); ADMIN_PORT=N serves /www on a second port too.
listen="${LISTEN:-${PORT:-8080}}"
echo "demo-service: starting (pid $$)"
if [ -n "${DEMO_DELAY:-}" ]; then
    echo "demo-service: waiting ${DEMO_DELAY} s before listening"
    sleep "${DEMO_DELAY}"
fi
if [ -n "${DEMO_EXIT:-}" ]; then
    echo "demo-service: exiting with ${DEMO_EXIT} as asked"
    exit "${DEMO_EXIT}"
fi
if [ -n "${DEMO_NO_HEALTH:-}" ]; then
    rm -f /www/health
fi
if [ -n "${ADMIN_PORT:-}" ]; then
    httpd -p "${ADMIN_PORT}" -h /www  # without -f httpd goes to the background
fi
echo "demo-service: listening on ${listen}"
exec httpd -f -vv -p "${listen}" -h /www
