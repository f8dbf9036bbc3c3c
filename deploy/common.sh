# shellcheck shell=bash
# deploy/common.sh -- the few helpers deploy-async.sh, deploy/transfer.sh and
# deploy/host.sh share. Sourced, never run. It travels with host.sh: over SSH
# deploy-async.sh sends both (and the templates host.sh uses) to the server.

say() { printf '==> %s\n' "$*"; }
warn() { printf '警告: %s\n' "$*" >&2; }
die() {
    printf '错误: %s\n' "$*" >&2
    exit 1
}

valid_port() { [[ $1 =~ ^[0-9]+$ ]] && [ "$1" -ge 1 ] && [ "$1" -le 65535 ]; }

# An absolute path without trailing slashes (not resolved: it may not exist yet).
absolute() {
    local p=$1
    case $p in /*) ;; *) p=$PWD/$p ;; esac
    while [ "${#p}" -gt 1 ] && [ "${p%/}" != "$p" ]; do p=${p%/}; done
    printf '%s\n' "$p"
}

# Whether a setting's name says it holds a secret. Such a value must never be
# a command-line argument: `ps` shows those to every user of both machines.
secret_name() {
    local name
    name=$(printf '%s' "$1" | tr '[:lower:]' '[:upper:]')
    case $name in *PASSWORD* | *SECRET* | *TOKEN* | *DATABASE_URL*) return 0 ;; esac
    return 1
}
