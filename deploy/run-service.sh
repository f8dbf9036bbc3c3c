#!/usr/bin/env bash
# Runs one part of the prediction service of the release this file belongs
# to, in the foreground, as installed by deploy-async.sh (deploy/host.sh):
#
#   BASE/current/deploy/run-service.sh BASE [api]        the API: gunicorn (behind the deploy's nginx)
#   BASE/current/deploy/run-service.sh BASE worker       the workers: python -m destination_predictor.worker
#   BASE/current/deploy/run-service.sh BASE check-worker PID
#                                                        whether the worker command PID has its RQ
#                                                        workers registered with Redis (the deploy's
#                                                        health check of a worker machine)
#
# Both managers start the service through this one file -- systemd's
# ExecStart and the pid-file fallback -- so they cannot drift apart. Both run
# it as the service's own user (deploy-async.sh --user, default prediction).
# It reads BASE/shared/deploy.conf (ports; written by the deploy script),
# BASE/shared/service.env (PREDICT_* settings the operator may edit) and the
# token file, points PREDICT_DATA_DIR at BASE/shared (unless service.env names
# another dir: the directory all machines of a distributed service share) so
# uploads, results, the task database and the log outlive every release, and
# execs gunicorn or the worker command (so the pid that systemd or the pid file
# holds is that process itself). The worker check builds the very same
# environment, so it asks the Redis the workers use.
#
# gunicorn listens on 127.0.0.1:BACKEND_PORT only, behind the deploy's nginx,
# which listens on BIND_HOST:PORT. (A deploy.conf from before nginx has no
# BACKEND_PORT: gunicorn then listens on BIND_HOST:PORT itself, as it did.)
#
# No token, no API: without a readable, non-empty shared/api_token it refuses
# to start (exit 78), instead of serving every student's grades to anyone who
# reaches the port. The workers serve no HTTP and need no token; without
# PREDICT_QUEUE_URL they have nothing to work for (exit 78 too).
set -euo pipefail

BASE=${1:?usage: run-service.sh BASE_DIR [api|worker|check-worker PID]}
ROLE=${2:-api}
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

# A configuration this script cannot run with: systemd does not retry it
# (RestartPreventExitStatus=78 in the unit), the pid-file start reports it.
refuse() {
    echo "run-service.sh: $*" >&2
    exit 78
}

load_kv "$SHARED/service.env"
# The ports, bind address and token are the deploy's, never the env file's.
unset PREDICT_API_TOKEN PREDICT_ALLOW_ANONYMOUS PREDICT_PORT PREDICT_HOST
# The data dir: shared/, or the one service.env names (checked by the deploy:
# absolute, outside the releases).
export PREDICT_DATA_DIR=${PREDICT_DATA_DIR:-$SHARED}
# A real model or real plans put into shared/ survive every deploy; the demo
# ones shipped with the code are used until then. Plans count when there are
# plan folders (education-plan<year>/, what the engine reads): with the data
# dir in shared/, the service's own plan store (/api/plans) keeps its
# versions/ and builds/ in shared/plans too, and those are no plans.
if [ -z "${PREDICT_MODEL_DIR:-}" ] && [ -n "$(ls -A "$SHARED/models" 2>/dev/null)" ]; then
    export PREDICT_MODEL_DIR=$SHARED/models
fi
if [ -z "${PREDICT_PLANS_DIR:-}" ] && compgen -G "$SHARED/plans/education-plan[0-9][0-9][0-9][0-9]" >/dev/null; then
    export PREDICT_PLANS_DIR=$SHARED/plans
fi
cd "$RELEASE"

case $ROLE in
    api) ;;
    worker)
        [ -n "${PREDICT_QUEUE_URL:-}" ] || refuse "执行进程（--role worker）需要 $SHARED/service.env 中的 PREDICT_QUEUE_URL（Redis）"
        # Concurrency: PREDICT_MAX_WORKERS (default 3), read by the command itself.
        exec "$RELEASE/.venv/bin/python" -m destination_predictor.worker
        ;;
    check-worker)
        [[ ${3:-} =~ ^[0-9]+$ ]] || refuse "用法: run-service.sh BASE check-worker PID"
        exec "$RELEASE/.venv/bin/python" -m destination_predictor.worker.probe --pid "$3"
        ;;
    *) refuse "未知角色: $ROLE（api、worker 或 check-worker）" ;;
esac

PORT=$(conf_value PORT)
BIND_HOST=$(conf_value BIND_HOST)
BACKEND_PORT=$(conf_value BACKEND_PORT)
[[ $PORT =~ ^[0-9]+$ ]] || refuse "$SHARED/deploy.conf 中没有有效的 PORT"
[ -z "$BACKEND_PORT" ] || [[ $BACKEND_PORT =~ ^[0-9]+$ ]] || refuse "$SHARED/deploy.conf 中的 BACKEND_PORT 无效"
BIND_HOST=${BIND_HOST:-0.0.0.0}

TOKEN=''
if [ -r "$SHARED/api_token" ]; then TOKEN=$(tr -d '[:space:]' <"$SHARED/api_token"); fi
[ -n "$TOKEN" ] || refuse "缺少 API 令牌（$SHARED/api_token 不存在、不可读或为空），拒绝在无鉴权的情况下启动；重新部署（deploy-async.sh deploy）会生成新令牌"

export PREDICT_PORT=$PORT # also names the log file: async_api_<PORT>.log
export PREDICT_API_TOKEN=$TOKEN
if [ -n "$BACKEND_PORT" ]; then
    export PREDICT_HOST=127.0.0.1
    bind=127.0.0.1:$BACKEND_PORT
else
    export PREDICT_HOST=$BIND_HOST
    case $BIND_HOST in
        *:*) bind="[$BIND_HOST]:$PORT" ;;
        *) bind="$BIND_HOST:$PORT" ;;
    esac
fi

# No control-socket flag here: gunicorn.conf.py (control_socket_disable) is its
# one owner, for this service and every other way the project runs gunicorn.

exec "$RELEASE/.venv/bin/python" -m gunicorn -c "$RELEASE/gunicorn.conf.py" --bind "$bind" \
    async_api_server:app
