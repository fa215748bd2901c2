# One stand-in version on top of a per-architecture stand-in base: only metadata changes, so it builds in a second.
ARG BASE
FROM ${BASE}
ARG VERSION
LABEL org.opencontainers.image.version=${VERSION}
# The version the stand-in pretends to be (the vault entrypoint: 2.x needs IPC_LOCK unless SKIP_SETCAP is set).
ENV STANDIN_VERSION=${VERSION}
