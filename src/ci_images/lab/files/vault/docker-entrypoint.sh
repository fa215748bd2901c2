#!/bin/sh
# Stand-in for hashicorp/vault's docker-entrypoint.sh (.release/docker/docker-entrypoint.sh), running OpenBao's
# Vault-compatible `bao` as `vault`. Same argument handling and environment variables; what differs is said below.
set -e

ulimit -c 0

VAULT_CONFIG_DIR=/vault/config

if [ -n "$VAULT_LOCAL_CONFIG" ]; then
    echo "$VAULT_LOCAL_CONFIG" > "$VAULT_CONFIG_DIR/local.json"
fi

# Arguments starting with a dash go to vault.
case "$1" in
    -*) set -- vault "$@" ;;
esac

if [ "$1" = 'server' ]; then
    shift
    set -- vault server \
        -config="$VAULT_CONFIG_DIR" \
        -dev-root-token-id="$VAULT_DEV_ROOT_TOKEN_ID" \
        -dev-listen-address="${VAULT_DEV_LISTEN_ADDRESS:-"0.0.0.0:8200"}" \
        "$@"
elif [ "$1" = 'version' ]; then
    set -- vault "$@"
elif vault --help "$1" 2>&1 | grep -q "vault $1\|bao $1"; then
    set -- vault "$@"
fi

# 1 when this container may lock memory (CAP_IPC_LOCK is capability bit 14 of the bounding set).
has_ipc_lock() {
    bnd=$(sed -n 's/^CapBnd:[[:space:]]*//p' /proc/self/status)
    [ $(( (0x$bnd >> 14) & 1 )) -eq 1 ]
}

if [ "$1" = 'vault' ] && [ -z "$SKIP_SETCAP" ]; then
    # The real image setcaps the binary here. 1.x falls back to running without mlock; 2.x images set the
    # capability at build time and so cannot start at all without it, unless SKIP_SETCAP is set.
    major=${STANDIN_VERSION%%.*}
    if ! has_ipc_lock; then
        if [ "${major:-0}" -ge 2 ] 2>/dev/null; then
            >&2 echo "Vault requires the IPC_LOCK capability. Please use --cap-add IPC_LOCK or add it to the securityContext capabilities"
            >&2 echo "/usr/local/bin/docker-entrypoint.sh: exec: vault: Operation not permitted"
            exit 126
        fi
        >&2 echo "Couldn't start vault with IPC_LOCK. Disabling IPC_LOCK, please use --privileged or --cap-add IPC_LOCK"
    fi
fi

# The real image drops to the `vault` user with su-exec; the stand-in stays root (no su-exec in busybox).
exec "$@"
