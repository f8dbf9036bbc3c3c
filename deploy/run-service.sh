#!/usr/bin/env bash
# Runs the prediction service of the release this file belongs to, in the
# foreground, as installed by deploy-async.sh (deploy/host.sh):
#
#   BASE/current/deploy/run-service.sh BASE
#
# Both managers start the service through this one file -- systemd's
# ExecStart and the pid-file fallback -- so they cannot drift apart. It reads
# BASE/shared/deploy.conf (port, bind address; written by the deploy script),
# BASE/shared/service.env (PREDICT_* settings the operator may edit) and the
# token file, points PREDICT_DATA_DIR at BASE/shared so uploads, results, the
# task database and the log outlive every release, and execs gunicorn (so the
# pid that systemd or the pid file holds is gunicorn's master itself).
set -euo pipefail

BASE=${1:?usage: run-service.sh BASE_DIR}
RELEASE=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)
SHARED=$BASE/shared

# KEY=VALUE lines; no shell evaluation, so a value is used exactly as written.
load_kv() {
    local file=$1 line key
    [ -f "$file" ] || return 0
    while IFS= read -r line || [ -n "$line" ]; do
        case $line in '' | '#'*) continue ;; esac
        key=${line%%=*}
        if [[ ! $key =~ ^[A-Za-z_][A-Za-z0-9_]*$ ]] || [ "$key" = "$line" ]; then
            echo "run-service.sh: 忽略 $file 中无法识别的行: $line" >&2
            continue
        fi
        export "$key=${line#*=}"
    done <"$file"
}

conf_value() {
    sed -n "s/^$1=//p" "$SHARED/deploy.conf" 2>/dev/null | tail -n 1
}

load_kv "$SHARED/service.env"
# The port, bind address and data dir are the deploy's, never the env file's.
PORT=$(conf_value PORT)
BIND_HOST=$(conf_value BIND_HOST)
if [[ ! $PORT =~ ^[0-9]+$ ]]; then
    echo "run-service.sh: $SHARED/deploy.conf 中没有有效的 PORT" >&2
    exit 2
fi
BIND_HOST=${BIND_HOST:-0.0.0.0}

export PREDICT_DATA_DIR=$SHARED
export PREDICT_PORT=$PORT
export PREDICT_HOST=$BIND_HOST
if [ -s "$SHARED/api_token" ]; then
    PREDICT_API_TOKEN=$(tr -d '[:space:]' <"$SHARED/api_token")
    export PREDICT_API_TOKEN
fi
# A real model or real plans put into shared/ survive every deploy; the demo
# ones shipped with the code are used until then.
if [ -z "${PREDICT_MODEL_DIR:-}" ] && [ -n "$(ls -A "$SHARED/models" 2>/dev/null)" ]; then
    export PREDICT_MODEL_DIR=$SHARED/models
fi
if [ -z "${PREDICT_PLANS_DIR:-}" ] && [ -n "$(ls -A "$SHARED/plans" 2>/dev/null)" ]; then
    export PREDICT_PLANS_DIR=$SHARED/plans
fi

case $BIND_HOST in
    *:*) bind="[$BIND_HOST]:$PORT" ;;
    *) bind="$BIND_HOST:$PORT" ;;
esac

# No control-socket flag here: gunicorn.conf.py (control_socket_disable) is its
# one owner, for this service and every other way the project runs gunicorn.

cd "$RELEASE"
exec "$RELEASE/.venv/bin/python" -m gunicorn -c "$RELEASE/gunicorn.conf.py" --bind "$bind" \
    async_api_server:app
