#!/usr/bin/env bash
# deploy/host.sh -- the target machine's half of deploy-async.sh: everything
# that happens where the service runs.
#
#   host.sh activate  BASE INCOMING [options]  make releases/INCOMING the running release
#   host.sh preflight BASE [options]           refuse a deploy that cannot work, before anything
#                                              is uploaded (a worker without Redis, say); touches nothing
#   host.sh status    BASE                     version, processes, health
#                                              (exit 0 healthy, 1 running but unhealthy, 3 not running)
#   host.sh logs      BASE [--lines N] [--follow]
#   host.sh restart   BASE                     restart, wait for the health check
#   host.sh stop      BASE                     stop this deploy's own processes only
#   host.sh rollback  BASE                     switch to `previous` (once more: back again)
#   host.sh port      BASE                     print the port the deployed API listens on (none: a worker)
#   host.sh check     BASE [options]           only validate BASE and the options, touch nothing
#   host.sh nginx-conf BASE [options]          print the nginx config the service would run with
#   host.sh unit      BASE [options]           print the systemd units a deploy would install
#
# Options: --role api|worker|all  --port N  --host ADDR  --backend-port N  --name UNIT
#          --manager auto|systemd|pid  --user NAME  --memory-max SIZE  --python PY  --venv-from DIR
#          --keep N  --env KEY=VALUE (repeatable)  --env-file FILE  --health-timeout S  --lines N  --follow
# Every subcommand accepts every option -- deploy-async.sh forwards what the
# operator gave -- and ignores the ones it has no use for.
#
# Roles (--role, recorded in deploy.conf like the other flags):
#
#   all      the default, as before roles existed: nginx on --host:--port (its
#            own instance, config from deploy/nginx.conf.in) in front of
#            gunicorn on 127.0.0.1:--backend-port; and, when service.env sets
#            PREDICT_QUEUE_URL (the distributed mode), the worker command too.
#   api      nginx + gunicorn only (in the distributed mode: one of several API
#            instances, PREDICT_HTTP_WORKERS may be > 1).
#   worker   no nginx, no gunicorn, no port: `python -m destination_predictor.worker`
#            (PREDICT_MAX_WORKERS RQ workers), which needs PREDICT_QUEUE_URL and
#            PREDICT_TASKS_DB_URL; healthy when its workers are registered with Redis.
#
# Every process runs as the service's own system user (--user, default
# prediction; created when missing), under systemd (units NAME, NAME-nginx,
# NAME-worker) or as pid-file processes. For the other subcommands --role
# narrows what they act on (`stop --role worker` on an `all` machine stops its
# workers only); a machine without that role is skipped.
#
# deploy-async.sh runs this file as is for --local; over SSH it sends it --
# with deploy/common.sh, which it sources, and the templates it uses
# (deploy/nginx.conf.in, deploy/prediction-nginx.service.in) and, for
# --env-file, the secrets -- to a private temporary directory on the server
# and runs it there. The rest comes from the release it deploys
# (deploy/run-service.sh, deploy/prediction-service.service.in,
# deploy/prediction-worker.service.in, destination_predictor/client/probe.py
# and destination_predictor/worker/probe.py for the health checks).
#
# Reading order: the subcommands first, `activate` (one deploy) at the top;
# the helpers they use follow. main, at the very end, picks the subcommand.
set -euo pipefail
umask 022 # releases and venvs are read by the service's own user; secrets set their own mode

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)
# shellcheck source=deploy/common.sh
. "$HERE/common.sh"

DEFAULT_PORT=8080
DEFAULT_BIND=0.0.0.0
DEFAULT_KEEP=5
DEFAULT_USER=prediction
DEFAULT_MEMORY_MAX=80%
STOP_TIMEOUT=45 # gunicorn's graceful_timeout (30 s) plus the job children's shutdown
# The workers, once told to stop, finish the job they run (RQ's warm
# shutdown) for this long; then they are killed and the API instances queue
# that task again (its heartbeat stops), as after a crash.
WORKER_STOP_TIMEOUT=45
ROLES='api worker all'

# A service is passed around as seven words, always in this order:
#
#   MANAGER NAME BIND PORT BACKEND USER ROLE
#
#   MANAGER  systemd | pid
#   NAME     the systemd unit name (its nginx: NAME-nginx, its workers: NAME-worker)
#   BIND     nginx's listen address
#   PORT     nginx's port: the one clients use
#   BACKEND  gunicorn's port on 127.0.0.1; `-` for a deploy.conf from before
#            nginx, whose gunicorn listens on BIND:PORT itself
#   USER     the account the service runs as; `-` for "as this script runs"
#            (not root, or a deploy.conf from before the service user)
#   ROLE     api | worker | all: which of the processes run here (see the top);
#            a worker machine records ports too, and uses none of them
#
# Every function that starts, stops, finds or probes a service takes them as
# its first seven arguments. `activate` holds two at once -- the service that
# runs now (as the last deploy.conf describes it) and the one this deploy
# wants -- and hands each over explicitly; nothing global is swapped.

# ===========================================================================
# Subcommands
# ===========================================================================

# One deploy, from an uploaded directory to a running, health-checked release.
# Nothing that runs is touched until the new release has its venv and the
# ports are known to be free; a release that fails its health check is
# stopped and the previous one brought back (see roll_back_deploy).
cmd_activate() {
    local incoming=$1
    [[ $incoming =~ ^\.incoming-[A-Za-z0-9T-]+$ ]] || die "无效的上传目录名: $incoming"
    [ -d "$RELEASES/$incoming" ] || die "上传的代码不存在: $RELEASES/$incoming"
    if [ "$OPT_MANAGER" = systemd ] && ! systemd_available; then
        die "--manager systemd：本机 systemd 未运行或当前用户不是 root"
    fi
    take_lock

    # The service as the last deploy started it, and as this one wants it
    # (the flags win, then the last deploy's values, then the defaults).
    local had_conf=no python venv_from keep memory_max
    local -a old new # MANAGER NAME BIND PORT BACKEND USER ROLE
    [ -f "$CONF" ] && had_conf=yes
    read_service old conf
    read_service new wanted
    # A role the settings cannot carry is refused before anything changes.
    check_planned_env "${new[5]}" "${new[6]}"
    python=$(wanted PYTHON "$OPT_PYTHON" python3)
    venv_from=$(wanted VENV_FROM "$OPT_VENV_FROM" '')
    keep=$(wanted KEEP "$OPT_KEEP" "$DEFAULT_KEEP")
    memory_max=$(wanted MEMORY_MAX "$OPT_MEMORY_MAX" "$DEFAULT_MEMORY_MAX")
    if [ "${new[0]}" = systemd ]; then check_systemd_paths "$venv_from"; fi

    # What the new service needs on this machine: nginx (the API's), its user, its data dir.
    if has_api "${new[@]}"; then ensure_nginx; fi
    ensure_user "${new[5]}"
    ensure_shared "${new[5]}"

    # The upload becomes releases/<UTC time>, with its token, settings and venv.
    local name release
    name=$(new_release_name)
    release=$RELEASES/$name
    mv "$RELEASES/$incoming" "$release"
    # Code, not secrets: root's (rsync and tar keep the uploader's uids), readable
    # by the service's user, writable by no one else. Root fills in systemd
    # units from it.
    if [ "$(id -u)" = 0 ]; then chown -R -h 0:0 "$release"; fi
    chmod -R u+rwX,go+rX,go-w "$release"
    chmod +x "$release/deploy/run-service.sh"
    say "新版本 releases/$name"
    # The workers serve no HTTP: a worker machine needs no token.
    if has_api "${new[@]}"; then ensure_token "${new[5]}" "$python"; fi
    ensure_env_file "${new[5]}" ${OPT_ENV[@]+"${OPT_ENV[@]}"}
    ensure_venv "$release" "$python" "$venv_from" ||
        fail_release "$release" "安装依赖失败；服务未改动（仍运行旧版本）"
    user_can_run "${new[5]}" "$release" ||
        fail_release "$release" "服务用户 ${new[5]} 无法运行 releases/$name/.venv/bin/python（它或部署目录位于该用户进不去的目录，如 /root 下的 pyenv）；用 --python 指定系统的 Python（如 /usr/bin/python3），或换一个部署目录；服务未改动"
    ensure_data_dir "${new[5]}" || fail_release "$release" "数据目录不可用（见上）；服务未改动"
    nginx_conf_valid "${new[@]}" ||
        fail_release "$release" "nginx 配置检查未通过（见上）；服务未改动"

    local old_release
    old_release=$(link_name current)
    if [ -n "$old_release" ] && [ ! -d "$RELEASES/$old_release" ]; then old_release=''; fi

    # Stop what runs now, but refuse first if a port the new service needs
    # is held by some other program (the old service may hold them itself:
    # that one we stop). A worker machine needs no port.
    local -a held=()
    if [ $had_conf = yes ]; then read -ra held <<<"$(ports_held "${old[@]}")"; fi
    local p
    if has_api "${new[@]}"; then
        for p in "${new[3]}" "${new[4]}"; do
            [ "$p" != - ] || continue
            if [[ " ${held[*]-} " == *" $p "* ]]; then continue; fi
            if port_in_use "$(port_host "$p" "${new[@]}")" "$p"; then
                fail_release "$release" "端口 $p 已被其他程序占用；服务未改动"
            fi
        done
    fi
    if [ $had_conf = yes ]; then service_stop "${old[@]}"; fi

    # Switch: keep the old deploy.conf for an automatic rollback, write the new
    # one, point `current` at the new release (atomically) and start it.
    if [ -f "$CONF" ]; then copy_root_file "$CONF" "$CONF.prev"; fi
    write_conf "${new[@]}" "$python" "$venv_from" "$keep" "$memory_max"
    if [ "${new[0]}" = systemd ]; then install_units "$release" "${new[@]}"; fi
    switch_link current "$name"
    service_start "${new[@]}"

    if ! wait_healthy "${new[@]}"; then
        roll_back_deploy "$name" "$old_release" "${new[@]}" # exits 1
    fi
    if [ -n "$old_release" ] && [ "$old_release" != "$name" ]; then
        switch_link previous "$old_release"
    fi
    prune "$keep"
    local what=''
    if has_api "${new[@]}"; then
        what="nginx ${new[2]}:${new[3]} -> gunicorn 127.0.0.1:${new[4]}"
    fi
    if wants_worker "${new[@]}"; then what="${what:+$what，}执行进程 $(worker_count "${new[5]}") 个"; fi
    say "部署成功：releases/$name 正在运行（角色 ${new[6]}，管理方式 ${new[0]}，$what，用户 $(user_label "${new[5]}")）"
    if has_api "${new[@]}"; then
        say "API 令牌文件: $TOKEN_FILE（权限 600；查看：cat $TOKEN_FILE）"
    fi
    say "数据目录 PREDICT_DATA_DIR: $(data_dir "${new[5]}")$(has_api "${new[@]}" && echo "（uploads/ results/ tasks.sqlite3 async_api_${new[3]}.log）")"
}

# The new release NAME failed its health check: stop it, keep it as
# NAME-failed, and bring back OLD_RELEASE with the deploy.conf (and systemd
# unit) it ran with. Exits 1 whatever happens: the deploy failed.
roll_back_deploy() {
    local name=$1 old_release=$2
    shift 2 # the failed service follows
    local release=$RELEASES/$name
    warn "新版本 releases/$name 未通过健康检查"
    show_log_tail "$@"
    service_stop "$@"
    if [ -z "$old_release" ]; then
        rm -f "$BASE/current"
        mv "$release" "$release-failed"
        warn "这是第一次部署，没有可回滚的版本；失败的版本在 releases/$name-failed"
        prune "$(wanted KEEP '' "$DEFAULT_KEEP")"
        exit 1
    fi
    switch_link current "$old_release"
    mv "$release" "$release-failed"
    if [ -f "$CONF.prev" ]; then mv -f "$CONF.prev" "$CONF"; fi
    local -a back
    read_service back conf
    if [ "${back[0]}" = systemd ]; then install_units "$RELEASES/$old_release" "${back[@]}"; fi
    warn "自动回滚到 releases/$old_release"
    if service_start "${back[@]}" && wait_healthy "${back[@]}"; then
        warn "已回滚：releases/$old_release 正在运行；失败的版本保留在 releases/$name-failed 供排查"
    else
        warn "回滚后的 releases/$old_release 也未通过健康检查；请查看 ./deploy-async.sh logs"
    fi
    prune "$(wanted KEEP '' "$DEFAULT_KEEP")"
    exit 1
}

cmd_status() {
    if [ ! -f "$CONF" ] || [ ! -L "$BASE/current" ]; then
        echo "部署目录: $BASE —— 尚未部署"
        exit 3
    fi
    local -a svc
    read_service svc conf
    narrow_or_skip svc
    local cur prev pid health rc=0
    cur=$(link_name current)
    prev=$(link_name previous)
    echo "部署目录:   $BASE"
    local recorded
    recorded=$(conf_get ROLE)
    if [ "${recorded:-all}" = "${svc[6]}" ]; then
        echo "角色:       $(role_label "${svc[@]}")"
    else
        echo "角色:       ${recorded:-all}，只显示 --role ${svc[6]} 的部分：$(role_label "${svc[@]}")"
    fi
    echo "当前版本:   releases/$cur"
    if [ -n "$prev" ]; then echo "上一版本:   releases/$prev"; else echo "上一版本:   （无）"; fi
    if [ "${svc[0]}" = systemd ]; then
        echo "管理方式:   systemd（单元 $(unit_names "${svc[@]}" | tr ' ' '、')）"
    else
        echo "管理方式:   后台进程 + pid 文件（$(pid_files "${svc[@]}")）"
    fi
    if has_api "${svc[@]}"; then
        if proxied "${svc[@]}"; then
            echo "监听:       ${svc[2]}:${svc[3]}（nginx，配置 $NGINX_CONF）"
            echo "后端:       127.0.0.1:${svc[4]}（gunicorn）"
        else
            echo "监听:       ${svc[2]}:${svc[3]}（gunicorn，无 nginx：重新部署后启用）"
        fi
    fi
    echo "服务用户:   $(user_label "${svc[5]}")"
    if has_api "${svc[@]}"; then echo "令牌文件:   $TOKEN_FILE"; fi
    echo "数据目录:   $(data_dir "${svc[5]}")"
    if has_api "${svc[@]}"; then
        if backend_running "${svc[@]}"; then
            pid=$(service_pid "${svc[@]}")
            echo "进程:       运行中 (pid ${pid:-?})"
            if proxied "${svc[@]}"; then
                if proxy_running "${svc[@]}"; then
                    echo "nginx:      运行中 (pid $(proxy_pid "${svc[@]}"))"
                else
                    echo "nginx:      未运行"
                fi
            fi
            if health=$(probe "${svc[@]}" 2>&1); then
                echo "健康检查:   正常 $health"
            else
                echo "健康检查:   失败 $health"
                rc=1
            fi
        else
            echo "进程:       未运行"
            rc=3
        fi
    fi
    if [ "${svc[6]}" != api ] && { wants_worker "${svc[@]}" || worker_running "${svc[@]}"; }; then
        if worker_running "${svc[@]}"; then
            echo "执行进程:   运行中 (pid $(worker_pid "${svc[@]}"))"
            if health=$(worker_probe "${svc[@]}" 2>&1); then
                echo "Redis 登记: 正常 $health"
            else
                echo "Redis 登记: 失败 $health"
                [ $rc = 3 ] || rc=1
            fi
        else
            echo "执行进程:   未运行"
            rc=3
        fi
    fi
    exit $rc
}

cmd_logs() {
    require_deployed
    local -a svc
    read_service svc conf
    narrow_or_skip svc
    local applog proxylog=$NGINX_DIR/error.log workerlog f
    local -a files=() units=()
    applog=$(data_dir "${svc[5]}")/async_api_${svc[3]}.log
    workerlog=$(data_dir "${svc[5]}")/worker_$(uname -n).log
    if has_api "${svc[@]}"; then
        units+=("${svc[1]}" "${svc[1]}-nginx")
        files+=("$applog" "$proxylog")
        [ "${svc[0]}" = systemd ] || files+=("$OUTLOG")
    fi
    if [ "${svc[6]}" != api ] && { wants_worker "${svc[@]}" || [ -f "$WORKER_OUTLOG" ]; }; then
        units+=("${svc[1]}-worker")
        files+=("$workerlog")
        [ "${svc[0]}" = systemd ] || files+=("$WORKER_OUTLOG")
    fi
    local -a present=()
    for f in "${files[@]}"; do
        if [ -s "$f" ] || { [ -f "$f" ] && [ "$f" != "$proxylog" ]; }; then present+=("$f"); fi
    done
    if [ "${svc[0]}" = systemd ]; then
        local -a args=()
        for f in "${units[@]}"; do args+=(-u "$f"); done
        if [ "$OPT_FOLLOW" = 1 ]; then
            exec journalctl "${args[@]}" -n "$OPT_LINES" -f --no-pager
        fi
        echo "==> journalctl ${args[*]} <=="
        journalctl "${args[@]}" -n "$OPT_LINES" --no-pager || true
        for f in ${present[@]+"${present[@]}"}; do
            echo
            echo "==> $f <=="
            tail -n "$OPT_LINES" "$f"
        done
        return 0
    fi
    [ ${#present[@]} -gt 0 ] || die "还没有日志文件（${files[*]}）"
    if [ "$OPT_FOLLOW" = 1 ]; then
        exec tail -v -n "$OPT_LINES" -F "${present[@]}"
    fi
    tail -v -n "$OPT_LINES" "${present[@]}"
}

cmd_restart() {
    require_deployed
    take_lock
    local -a svc
    read_service svc conf
    narrow_or_skip svc
    # Before anything stops: no token, no (re)start of the API; no Redis, no workers.
    if has_api "${svc[@]}"; then require_token "${svc[5]}"; fi
    check_planned_env "${svc[5]}" "${svc[6]}"
    if [ "${svc[0]}" = systemd ]; then
        # The units as deploy.conf and service.env describe them now (a
        # PREDICT_QUEUE_URL added to an `all` machine's service.env brings
        # its workers' unit).
        install_units "$BASE/current" "${svc[@]}"
        local -a units=()
        if has_api "${svc[@]}"; then
            units+=("${svc[1]}")
            if proxied "${svc[@]}"; then
                write_nginx_conf "${svc[@]}" || die "nginx 配置检查未通过（见上）"
                units+=("${svc[1]}-nginx")
            fi
        fi
        if wants_worker "${svc[@]}"; then
            units+=("${svc[1]}-worker")
        elif [ "${svc[6]}" != api ]; then
            stop_worker "${svc[@]}" # no longer asked for (PREDICT_QUEUE_URL gone)
        fi
        say "重启 systemd 单元 ${units[*]}"
        systemctl enable --quiet "${units[@]}"
        systemctl restart "${units[@]}"
    else
        service_stop "${svc[@]}"
        service_start "${svc[@]}"
    fi
    if ! wait_healthy "${svc[@]}"; then
        show_log_tail "${svc[@]}"
        die "重启后健康检查未通过"
    fi
}

cmd_stop() {
    require_deployed
    take_lock
    local -a svc
    read_service svc conf
    narrow_or_skip svc
    service_stop "${svc[@]}"
    say "服务已停止（$(role_label "${svc[@]}")；数据保留在 $(data_dir "${svc[5]}")）"
}

# `current` and `previous` trade places, so a second rollback undoes the
# first. The release keeps its own venv, so nothing is installed. It is the
# whole machine's: every role it runs switches together.
cmd_rollback() {
    require_deployed
    take_lock
    local -a svc
    read_service svc conf
    if [ -n "$OPT_ROLE" ] && [ "$OPT_ROLE" != all ] && [ "$OPT_ROLE" != "${svc[6]}" ]; then
        die "rollback 切换整台机器的版本（角色 ${svc[6]}），不能只回滚 $OPT_ROLE；去掉 --role"
    fi
    local cur prev
    cur=$(link_name current)
    prev=$(link_name previous)
    if [ -z "$prev" ] || [ ! -d "$RELEASES/$prev" ]; then
        die "没有可回滚的上一版本（previous 不存在）"
    fi
    [ -L "$RELEASES/$prev/.venv" ] || [ -d "$RELEASES/$prev/.venv" ] || die "上一版本 releases/$prev 缺少虚拟环境"
    if proxied "${svc[@]}" && ! grep -q BACKEND_PORT "$RELEASES/$prev/deploy/run-service.sh" 2>/dev/null; then
        die "上一版本 releases/$prev 早于 nginx 反向代理（它的 gunicorn 会直接占用端口 ${svc[3]}），不能回滚到它；需要旧代码时请用 deploy --source 重新部署"
    fi
    if { [ "${svc[6]}" != all ] || wants_worker "${svc[@]}" || [ "$(data_dir "${svc[5]}")" != "$SHARED" ]; } &&
        ! grep -q check-worker "$RELEASES/$prev/deploy/run-service.sh" 2>/dev/null; then
        die "上一版本 releases/$prev 早于 --role（它不会运行执行进程，也不认 service.env 中的 PREDICT_DATA_DIR），不能回滚到它；需要旧代码时请用 deploy --source 重新部署"
    fi
    if has_api "${svc[@]}"; then require_token "${svc[5]}"; fi
    say "回滚: releases/$cur -> releases/$prev"
    service_stop "${svc[@]}"
    switch_link current "$prev"
    switch_link previous "$cur"
    service_start "${svc[@]}"
    if wait_healthy "${svc[@]}"; then
        say "回滚完成：releases/$prev 正在运行（再次 rollback 可回到 releases/$cur）"
        return 0
    fi
    warn "releases/$prev 未通过健康检查，恢复 releases/$cur"
    show_log_tail "${svc[@]}"
    service_stop "${svc[@]}"
    switch_link current "$cur"
    switch_link previous "$prev"
    service_start "${svc[@]}"
    wait_healthy "${svc[@]}" || warn "releases/$cur 也未通过健康检查；请查看 logs"
    exit 1
}

# The API's port; nothing for a worker machine (it has none).
cmd_port() {
    require_deployed
    local -a svc
    read_service svc conf
    if has_api "${svc[@]}"; then conf_get PORT; fi
}

# Whether a deploy with these options can work on this machine: the role's
# settings (service.env as it would be after the deploy). Changes nothing;
# deploy-async.sh runs it on every host before it uploads to any.
cmd_preflight() {
    local -a svc
    read_service svc wanted
    if [ "$OPT_MANAGER" = systemd ] && ! systemd_available; then
        die "--manager systemd：本机 systemd 未运行或当前用户不是 root"
    fi
    check_planned_env "${svc[5]}" "${svc[6]}"
}

# The nginx config for this deploy path and these options, as the service
# would start with it (for review, and for the tests that run nginx).
cmd_nginx_conf() {
    local -a svc
    read_service svc wanted
    nginx_conf "${svc[@]}"
}

# The systemd units a deploy would install, with nothing installed: for the
# API (and its nginx), for the workers, or both -- as --role and the settings
# (service.env, --env, --env-file) say.
cmd_unit() {
    local -a svc
    read_service svc wanted
    local release=$BASE/current memory_max user data
    [ -f "$release/deploy/prediction-service.service.in" ] || release=$HERE/..
    memory_max=$(wanted MEMORY_MAX "$OPT_MEMORY_MAX" "$DEFAULT_MEMORY_MAX")
    user=$(unit_user "${svc[5]}")
    data=$(extra_dirs "${svc[5]}") || exit 1
    if has_api "${svc[@]}"; then
        echo "# ---- /etc/systemd/system/${svc[1]}.service ----"
        service_unit "$release" "${svc[1]}" "$user" "$memory_max" "$data"
        echo "# ---- /etc/systemd/system/${svc[1]}-nginx.service ----"
        nginx_unit "${svc[1]}"
    fi
    if wants_worker "${svc[@]}"; then
        echo "# ---- /etc/systemd/system/${svc[1]}-worker.service ----"
        worker_unit "$release" "${svc[1]}" "$user" "$memory_max" "$data"
    fi
}

# ===========================================================================
# Paths and settings
# ===========================================================================

BASE=
RELEASES=
SHARED=
CONF=
PIDFILE=
TOKEN_FILE=
ENV_FILE=
OUTLOG=
WORKER_PIDFILE=
WORKER_OUTLOG=
NGINX_DIR=
NGINX_CONF=
NGINX_PID=

# Fixed for the whole run: everything lives under BASE.
#
#   shared/  the service's data, root:USER 1770 -- the service writes its data
#            there, the sticky bit keeps it from renaming or replacing what
#            is root's (venvs/, deploy.conf, service.pid, worker.pid): this script runs
#            those as root, so they must stay out of the service's reach.
#   nginx/   root's: nginx's config, pid, error log and temp files.
set_paths() {
    BASE=$(absolute "$1")
    if [ -d "$BASE" ]; then BASE=$(cd "$BASE" && pwd -P); fi
    check_base_path "$BASE"
    RELEASES=$BASE/releases
    SHARED=$BASE/shared
    CONF=$SHARED/deploy.conf
    PIDFILE=$SHARED/service.pid
    TOKEN_FILE=$SHARED/api_token
    ENV_FILE=$SHARED/service.env
    OUTLOG=$SHARED/gunicorn.log
    WORKER_PIDFILE=$SHARED/worker.pid
    WORKER_OUTLOG=$SHARED/worker.log
    NGINX_DIR=$BASE/nginx
    NGINX_CONF=$NGINX_DIR/nginx.conf
    NGINX_PID=$NGINX_DIR/nginx.pid
    readonly BASE RELEASES SHARED CONF PIDFILE TOKEN_FILE ENV_FILE OUTLOG WORKER_PIDFILE WORKER_OUTLOG \
        NGINX_DIR NGINX_CONF NGINX_PID
}

# A deploy path ends up in a systemd unit, an nginx config and in shell
# commands on the server: absolute, and without characters that would need
# quoting there.
check_base_path() {
    [[ $1 =~ ^/[A-Za-z0-9._/@+-]*$ ]] || die "部署目录必须是绝对路径，且只含字母、数字和 ._/@+-: $1"
    [ "$1" != / ] || die "部署目录不能是 /"
}

# The units run with ProtectHome=yes: /home, /root and /run/user are not
# there for the service.
check_systemd_paths() {
    local p
    for p in "$BASE" "${1:-}"; do
        case $p/ in
            /home/* | /root/* | /run/user/*) die "systemd 单元使用 ProtectHome=yes：$p 不能位于 /home、/root 或 /run/user 下（换一个部署目录，或用 --manager pid）" ;;
        esac
    done
}

# The value of KEY in deploy.conf ('' when absent; the last line wins). Read
# as text, never evaluated by the shell.
conf_get() {
    local key=$1 line val=''
    if [ -f "$CONF" ]; then
        while IFS= read -r line || [ -n "$line" ]; do
            [ "${line%%=*}" = "$key" ] && val=${line#*=}
        done <"$CONF"
    fi
    printf '%s\n' "$val"
}

# wanted KEY FLAG DEFAULT: the flag if given, else what the last deploy used, else DEFAULT.
wanted() {
    local value
    value=$(conf_get "$1")
    printf '%s\n' "${2:-${value:-$3}}"
}

# gunicorn's port when the operator names none: 10000 above the public one
# (10000 below when that would pass 65535).
default_backend() {
    if [ $(($1 + 10000)) -le 65535 ]; then echo $(($1 + 10000)); else echo $(($1 - 10000)); fi
}

valid_bind() { [[ $1 =~ ^[A-Za-z0-9.:_-]+$ ]]; }
valid_name() { [[ $1 =~ ^[A-Za-z0-9_.@-]+$ ]]; }
valid_user() { [[ $1 =~ ^[a-z_][a-z0-9_-]{0,31}$ ]]; }
valid_memory() { [[ $1 =~ ^([0-9]+[KMGT]?|[0-9]{1,2}%|100%|infinity)$ ]]; }
valid_role() { [[ " $ROLES " == *" $1 "* ]]; }

# The service deploy.conf describes: MANAGER NAME BIND PORT BACKEND USER.
# Checked like flags: the file sits in the service's data dir, and its values
# end up in unit files and nginx's config.
service_in_conf() {
    local port bind name manager backend user role
    port=$(conf_get PORT)
    port=${port:-$DEFAULT_PORT}
    bind=$(conf_get BIND_HOST)
    bind=${bind:-$DEFAULT_BIND}
    name=$(conf_get SERVICE_NAME)
    name=${name:-prediction-service-$port}
    manager=$(conf_get MANAGER)
    [ "$manager" = systemd ] || manager=pid
    backend=$(conf_get BACKEND_PORT)
    backend=${backend:--}
    user=$(conf_get SERVICE_USER)
    if [ -z "$user" ] || [ "$(id -u)" != 0 ]; then user=-; fi
    role=$(conf_get ROLE)
    role=${role:-all} # a deploy.conf from before roles: the one machine that does everything
    valid_port "$port" || die "$CONF 中的 PORT 无效: $port"
    valid_bind "$bind" || die "$CONF 中的 BIND_HOST 无效: $bind"
    valid_name "$name" || die "$CONF 中的 SERVICE_NAME 无效: $name"
    [ "$backend" = - ] || valid_port "$backend" || die "$CONF 中的 BACKEND_PORT 无效: $backend"
    [ "$user" = - ] || valid_user "$user" || die "$CONF 中的 SERVICE_USER 无效: $user"
    valid_role "$role" || die "$CONF 中的 ROLE 无效: $role"
    printf '%s %s %s %s %s %s %s\n' "$manager" "$name" "$bind" "$port" "$backend" "$user" "$role"
}

# The service this deploy wants: MANAGER NAME BIND PORT BACKEND USER ROLE. A new
# --port without --name renames the unit with it (and, without
# --backend-port, moves gunicorn to its default port). The manager is
# detected anew each deploy.
service_wanted() {
    local port bind name manager backend user role
    port=$(wanted PORT "$OPT_PORT" "$DEFAULT_PORT")
    bind=$(wanted BIND_HOST "$OPT_HOST" "$DEFAULT_BIND")
    name=$(wanted SERVICE_NAME "$OPT_NAME" "prediction-service-$port")
    if [ -z "$OPT_NAME" ] && [ -n "$OPT_PORT" ]; then name=prediction-service-$port; fi
    backend=$(wanted BACKEND_PORT "$OPT_BACKEND_PORT" "$(default_backend "$port")")
    if [ -z "$OPT_BACKEND_PORT" ] && [ -n "$OPT_PORT" ]; then backend=$(default_backend "$port"); fi
    [ "$backend" != "$port" ] || die "--backend-port 不能与 --port 相同（$port）"
    user=-
    if [ "$(id -u)" = 0 ]; then user=$(wanted SERVICE_USER "$OPT_USER" "$DEFAULT_USER"); fi
    case $OPT_MANAGER in
        systemd | pid) manager=$OPT_MANAGER ;;
        *) if systemd_available; then manager=systemd; else manager=pid; fi ;;
    esac
    role=$(wanted ROLE "$OPT_ROLE" all)
    valid_role "$role" || die "$CONF 中的 ROLE 无效: $role"
    printf '%s %s %s %s %s %s %s\n' "$manager" "$name" "$bind" "$port" "$backend" "$user" "$role"
}

# read_service ARRAY conf|wanted: the seven words into ARRAY -- the service
# deploy.conf describes, or the one this run wants. Exits on a bad value
# (a `read <<<"$(...)"` alone would carry on with nothing).
read_service() {
    local -n into=$1
    local line
    if [ "$2" = conf ]; then line=$(service_in_conf) || exit 1; else line=$(service_wanted) || exit 1; fi
    # shellcheck disable=SC2034 # assigned for the caller, through the nameref
    read -ra into <<<"$line"
}

# The parts of a service (args: the seven words). The API: nginx + gunicorn;
# nginx only for a deploy.conf from after nginx came.
has_api() { [ "$7" != worker ]; }
proxied() { has_api "$@" && [ "$5" != - ]; }

# The workers: a worker machine's; an `all` machine's once its settings say
# the service is distributed (PREDICT_QUEUE_URL).
wants_worker() {
    case $7 in
        worker) return 0 ;;
        all) [ -n "$(planned_env PREDICT_QUEUE_URL "$6")" ] ;;
        *) return 1 ;;
    esac
}

role_label() {
    local parts=''
    if has_api "$@"; then parts='API：nginx + gunicorn'; fi
    if wants_worker "$@"; then parts="${parts:+$parts；}执行进程"; fi
    echo "$7（${parts:-无}）"
}

# narrow_or_skip ARRAY: --role on status/logs/restart/stop acts on that part
# of the machine only: ARRAY's ROLE becomes it. A machine that does not run
# it is skipped (exit 0, one line), so one command can name a whole cluster.
narrow_or_skip() {
    local -n svc_ref=$1
    local role=${svc_ref[6]}
    [ -n "$OPT_ROLE" ] && [ "$OPT_ROLE" != all ] && [ "$OPT_ROLE" != "$role" ] || return 0
    if [ "$role" = all ] && { [ "$OPT_ROLE" = api ] || wants_worker "${svc_ref[@]}" || worker_running "${svc_ref[@]}"; }; then
        svc_ref[6]=$OPT_ROLE
        return 0
    fi
    say "跳过 $BASE：这台机器的角色是 $(role_label "${svc_ref[@]}")，没有 $OPT_ROLE"
    exit 0
}

# The systemd units, or the pid files, of the parts the service has.
unit_names() {
    local -a units=()
    if has_api "$@"; then
        units+=("$2")
        if proxied "$@"; then units+=("$2-nginx"); fi
    fi
    if wants_worker "$@"; then units+=("$2-worker"); fi
    echo "${units[*]}"
}

pid_files() {
    local -a files=()
    if has_api "$@"; then files+=("$PIDFILE"); fi
    if wants_worker "$@"; then files+=("$WORKER_PIDFILE"); fi
    echo "${files[*]}"
}

user_label() {
    if [ "$1" = - ]; then echo "$(id -un)（与部署脚本相同）"; else echo "$1"; fi
}

# write_conf MANAGER NAME BIND PORT BACKEND USER ROLE PYTHON VENV_FROM KEEP MEMORY_MAX
write_conf() {
    local user=$6
    [ "$user" != - ] || user=''
    {
        echo "# Written by deploy-async.sh; the next deploy rewrites it (use its flags instead)."
        echo "PORT=$4"
        echo "BIND_HOST=$3"
        echo "BACKEND_PORT=$5"
        echo "SERVICE_NAME=$2"
        echo "SERVICE_USER=$user"
        echo "MANAGER=$1"
        echo "ROLE=$7"
        echo "MEMORY_MAX=${11}"
        echo "PYTHON=$8"
        echo "VENV_FROM=$9"
        echo "KEEP=${10}"
    } | write_root_file "$CONF" 644
}

# write_root_file PATH MODE < content: a new file renamed over PATH. Never
# written through an existing name: in shared/ the service's user could
# have put a symlink there.
write_root_file() {
    local path=$1 mode=$2 tmp
    tmp=$(mktemp "$path.XXXXXX")
    if ! cat >"$tmp" || ! chmod "$mode" "$tmp" || ! mv -f "$tmp" "$path"; then
        rm -f "$tmp"
        die "无法写入 $path"
    fi
}

copy_root_file() {
    write_root_file "$2" 644 <"$1"
}

require_deployed() {
    if [ ! -f "$CONF" ] || [ ! -L "$BASE/current" ]; then
        die "$BASE 中还没有部署（先执行 deploy）"
    fi
}

# One mutating command at a time per deploy path. The lock fd is closed for the
# service process (see start_pid), or a running service would hold it forever.
take_lock() {
    mkdir -p "$BASE"
    if command -v flock >/dev/null 2>&1; then
        exec 9>"$BASE/.deploy.lock"
        flock -w 600 9 || die "另一个部署操作正在进行（$BASE/.deploy.lock）"
    fi
}

# ===========================================================================
# Releases and links
# ===========================================================================

new_release_name() {
    local stamp name n=1
    stamp=$(date -u +%Y%m%dT%H%M%SZ)
    name=$stamp
    while [ -e "$RELEASES/$name" ] || [ -e "$RELEASES/$name-failed" ]; do
        n=$((n + 1))
        name=$stamp-$n
    done
    printf '%s\n' "$name"
}

# A release that never ran: kept as <name>-failed for a look, then stop.
fail_release() {
    mv "$1" "$1-failed"
    die "$2"
}

link_name() {
    local t
    t=$(readlink "$BASE/$1" 2>/dev/null) || return 0
    basename "$t"
}

# Atomic: a new symlink renamed over the old one (rename(2)).
switch_link() {
    local which=$1 release=$2 tmp
    tmp=$BASE/.$which.tmp.$$
    ln -sfn "releases/$release" "$tmp"
    mv -Tf "$tmp" "$BASE/$which"
}

release_names() {
    local d
    for d in "$RELEASES"/*/; do
        [ -d "$d" ] || continue
        d=${d%/}
        d=${d##*/}
        [[ $d =~ ^[0-9]{8}T[0-9]{6}Z(-[0-9]+)?(-failed)?$ ]] && printf '%s\n' "$d"
    done | sort -r
    return 0
}

# Keep the newest KEEP releases (and always current and previous), drop
# uploads abandoned for an hour and venvs no remaining release points to.
prune() {
    local keep=$1 cur prev n count=0
    cur=$(link_name current)
    prev=$(link_name previous)
    while IFS= read -r n; do
        [ -n "$n" ] || continue
        count=$((count + 1))
        if [ "$n" = "$cur" ] || [ "$n" = "$prev" ] || [ $count -le "$keep" ]; then
            continue
        fi
        say "删除旧版本 releases/$n"
        rm -rf -- "${RELEASES:?}/$n"
    done < <(release_names)
    find "$RELEASES" -mindepth 1 -maxdepth 1 -name '.incoming-*' -mmin +60 -exec rm -rf {} + 2>/dev/null || true
    local v used t r
    for v in "$SHARED"/venvs/*/; do
        [ -d "$v" ] || continue
        v=${v%/}
        v=${v##*/}
        used=no
        for r in "$RELEASES"/*/; do
            t=$(readlink "$r.venv" 2>/dev/null) || continue
            [ "${t##*/}" = "$v" ] && used=yes && break
        done
        if [ $used = no ]; then
            say "删除不再使用的虚拟环境 shared/venvs/$v"
            rm -rf -- "${SHARED:?}/venvs/$v"
        fi
    done
}

# ===========================================================================
# The service's user, data dir, token and service.env
# ===========================================================================

# setpriv's words that run a command as USER with a clean environment, as
# systemd's User= does ('-', or not root: none -- run as we are).
USER_PREFIX=()
user_prefix() {
    local user=$1 home
    USER_PREFIX=()
    if [ "$user" = - ] || [ "$(id -u)" != 0 ]; then return 0; fi
    home=$(getent passwd "$user" | cut -d: -f6) || home=/
    USER_PREFIX=(setpriv "--reuid=$user" "--regid=$(user_group "$user")" --init-groups --no-new-privs
        --inh-caps=-all --bounding-set=-all -- env -i PATH=/usr/local/bin:/usr/bin:/bin
        "HOME=${home:-/}" LANG=C.UTF-8)
}

# The primary group of USER (by name; the user itself when it does not exist yet).
user_group() {
    id -gn "$1" 2>/dev/null || echo "$1"
}

# as_user USER COMMAND...: COMMAND as the service's user. Whatever belongs to
# that user (its token, service.env) is read and written this way, never by
# root through a path the service could have pointed elsewhere.
as_user() {
    local user=$1
    shift
    user_prefix "$user"
    ${USER_PREFIX[@]+"${USER_PREFIX[@]}"} "$@"
}

# ensure_user USER: the service's own system account -- no home, no login
# shell, a group of its own -- created on first deploy.
ensure_user() {
    local user=$1
    [ "$user" != - ] || return 0
    command -v setpriv >/dev/null 2>&1 || die "缺少 setpriv（util-linux），无法以服务用户 $user 运行"
    if id -u "$user" >/dev/null 2>&1; then return 0; fi
    command -v useradd >/dev/null 2>&1 || die "缺少 useradd，无法创建服务用户 $user（或用 --user 指定已有用户）"
    local -a group=(--user-group)
    if getent group "$user" >/dev/null 2>&1; then group=(--gid "$user"); fi
    useradd --system "${group[@]}" --no-create-home --home-dir /nonexistent \
        --shell /usr/sbin/nologin --comment "student destination prediction service" "$user" ||
        die "创建服务用户 $user 失败"
    say "已创建系统用户 $user（无主目录、无登录 shell），服务以它运行"
}

# Shared dirs, and who owns what in shared/: the service's user its data
# (all but the entries below), root the deploy's own files and the venvs it
# runs itself. shared/ is root:USER 1770, so the service can create its
# files there but not rename or replace root's.
ensure_shared() {
    local user=$1 group
    mkdir -p "$RELEASES" "$SHARED/uploads" "$SHARED/results" "$SHARED/models" "$SHARED/plans" \
        "$SHARED/venvs" "$NGINX_DIR"
    [ "$user" != - ] || return 0
    group=$(user_group "$user")
    chmod o+x "$BASE" # the service's user and nginx's workers pass through
    chown -h root:root "$RELEASES" "$NGINX_DIR"
    chmod 755 "$RELEASES" "$NGINX_DIR"
    chown -h "root:$group" "$SHARED"
    chmod 1770 "$SHARED"
    find "$SHARED" -mindepth 1 -maxdepth 1 ! -name venvs ! -name 'deploy.conf*' ! -name 'service.pid*' \
        ! -name 'worker.pid*' \
        -exec chown -R -h "$user:$group" {} +
    chown -h root:root "$SHARED/venvs"
}

# Tiny scripts run as the service's user (as_user): the file is its own, and
# replaced atomically (a new file renamed over it), never rewritten in place.
# shellcheck disable=SC2016 # expanded by the inner bash
WRITE_PRIVATE='umask 077 && t=$(mktemp "$1.XXXXXX") || exit 1
cat >"$t" && chmod 600 "$t" && mv -f "$t" "$1" || { rm -f "$t"; exit 1; }'

# ensure_token USER PYTHON: generated once (openssl, else PYTHON's secrets),
# kept by every later deploy; the service's user owns it (600). Several API
# hosts behind one load balancer need one token: PREDICT_API_TOKEN in the
# --env-file is written here (never into service.env), on every deploy.
ensure_token() {
    local user=$1 token given=''
    if [ -n "$OPT_ENV_FILE" ]; then given=$(env_file_value PREDICT_API_TOKEN "$OPT_ENV_FILE"); fi
    if [ -n "$given" ]; then
        if [ "$(as_user "$user" cat -- "$TOKEN_FILE" 2>/dev/null | tr -d '[:space:]')" != "$given" ]; then
            printf '%s\n' "$given" | as_user "$user" bash -c "$WRITE_PRIVATE" _ "$TOKEN_FILE" ||
                die "无法写入 API 令牌 $TOKEN_FILE：服务不会在没有令牌的情况下部署"
        fi
        as_user "$user" chmod 600 "$TOKEN_FILE"
        say "API 令牌来自 --env-file 的 PREDICT_API_TOKEN（$TOKEN_FILE，权限 600；同一集群的 API 主机用同一个令牌）"
        return 0
    fi
    if has_token "$user"; then
        as_user "$user" chmod 600 "$TOKEN_FILE"
        say "沿用已有的 API 令牌 ($TOKEN_FILE)"
        return 0
    fi
    if command -v openssl >/dev/null 2>&1; then
        token=$(openssl rand -hex 32)
    else
        token=$("$2" -c 'import secrets; print(secrets.token_hex(32))')
    fi
    [[ $token =~ ^[0-9a-f]{64}$ ]] || die "生成 API 令牌失败：服务不会在没有令牌的情况下部署"
    printf '%s\n' "$token" | as_user "$user" bash -c "$WRITE_PRIVATE" _ "$TOKEN_FILE" ||
        die "无法写入 API 令牌 $TOKEN_FILE：服务不会在没有令牌的情况下部署"
    say "已生成 API 令牌 ($TOKEN_FILE，权限 600)"
}

# Whether the token file is readable by USER and holds more than white space.
has_token() {
    as_user "$1" grep -q '[^[:space:]]' "$TOKEN_FILE" 2>/dev/null
}

# No token, no service: checked before anything is (re)started or stopped.
require_token() {
    if ! has_token "$1"; then
        die "缺少 API 令牌 $TOKEN_FILE（不存在、不可读或为空）：服务不会在无鉴权的情况下启动。重新部署（deploy）会生成新令牌"
    fi
}

env_template() {
    cat <<'EOF'
# 预测服务配置：每行 KEY=VALUE，值不加引号；修改后执行 ./deploy-async.sh restart 生效。
# PREDICT_PORT / PREDICT_HOST / PREDICT_API_TOKEN 由部署脚本管理，在此设置无效
# （多台 API 主机共用的令牌：在 --env-file 中写 PREDICT_API_TOKEN=…，部署时写入 shared/api_token）。
# 含密码的设置（如 PREDICT_DATABASE_URL）用 deploy-async.sh --env-file 文件 写入，不要放在命令行上。
# 模型与培养方案：把真实文件放进 shared/models、shared/plans 即自动使用（为空时用代码自带的演示数据）。
# 数据目录默认是本部署的 shared/；多台机器（分布式模式）共用的目录用 PREDICT_DATA_DIR=/绝对路径 指定。
# 分布式模式：PREDICT_QUEUE_URL=redis://主机:6379/0 与 PREDICT_TASKS_DB_URL=postgresql://…（--role worker 必需）。
# PREDICT_MAX_WORKERS=3
# PREDICT_MAX_PENDING=50
# PREDICT_TASK_TIMEOUT_S=1800
# PREDICT_RETENTION_HOURS=24
# PREDICT_MAX_UPLOAD_MB=50
# PREDICT_DATABASE_URL=postgresql://user:password@dbhost/dbname
EOF
}

# ensure_env_file USER [KEY=VALUE...]: the commented template on first deploy,
# then each pair of --env and of --env-file set. The values (secrets among
# them) travel in pipes only, never as arguments; the file is the service
# user's, mode 600.
ensure_env_file() {
    local user=$1
    shift
    local -a pairs=("$@")
    local line
    if [ -n "$OPT_ENV_FILE" ]; then
        while IFS= read -r line; do
            # The token goes to shared/api_token (ensure_token), never into service.env.
            [ "${line%%=*}" = PREDICT_API_TOKEN ] || pairs+=("$line")
        done < <(env_file_pairs "$OPT_ENV_FILE")
    fi
    if ! as_user "$user" test -f "$ENV_FILE"; then
        env_template | as_user "$user" bash -c "$WRITE_PRIVATE" _ "$ENV_FILE" ||
            die "无法写入 $ENV_FILE"
    fi
    [ ${#pairs[@]} -gt 0 ] || return 0
    local current kv key keep i j
    current=$(as_user "$user" cat -- "$ENV_FILE") || die "无法读取 $ENV_FILE"
    {
        # The file as it is, without the keys being set ...
        printf '%s\n' "$current" | while IFS= read -r line || [ -n "$line" ]; do
            keep=yes
            for kv in "${pairs[@]}"; do
                if [ "${line%%=*}" = "${kv%%=*}" ]; then keep=no && break; fi
            done
            if [ $keep = yes ]; then printf '%s\n' "$line"; fi
        done
        # ... then each of them once (the last pair of a key wins).
        for ((i = 0; i < ${#pairs[@]}; i++)); do
            key=${pairs[i]%%=*}
            keep=yes
            for ((j = i + 1; j < ${#pairs[@]}; j++)); do
                if [ "${pairs[j]%%=*}" = "$key" ]; then keep=no && break; fi
            done
            if [ $keep = yes ]; then printf '%s\n' "${pairs[i]}"; fi
        done
    } | as_user "$user" bash -c "$WRITE_PRIVATE" _ "$ENV_FILE" || die "无法写入 $ENV_FILE"
    for key in $(printf '%s\n' "${pairs[@]%%=*}" | sort -u); do
        say "service.env: $key 已设置"
    done
}

# The KEY=VALUE lines of an --env-file (blank lines and # comments skipped),
# checked like --env. Errors name the line, never its value.
env_file_pairs() {
    local file=$1 line n=0
    if [ ! -f "$file" ] || [ ! -r "$file" ]; then die "--env-file 不可读: $file"; fi
    while IFS= read -r line || [ -n "$line" ]; do
        n=$((n + 1))
        line=${line%$'\r'}
        case $line in '' | '#'*) continue ;; esac
        [[ $line =~ ^[A-Za-z_][A-Za-z0-9_]*= ]] || die "--env-file $file 第 $n 行不是 KEY=VALUE"
        if [ "${line%%=*}" = PREDICT_API_TOKEN ]; then
            [[ ${line#*=} =~ ^[A-Za-z0-9._~+/=-]{32,}$ ]] ||
                die "--env-file $file 第 $n 行: PREDICT_API_TOKEN 至少 32 个字符，只含字母、数字和 ._~+/=-（它会写入 shared/api_token）"
        elif managed_key "${line%%=*}"; then
            die "--env-file $file 第 $n 行: ${line%%=*} 由部署脚本管理，不能在此设置"
        fi
        if [ "${line%%=*}" = PREDICT_DATA_DIR ] && ! valid_data_dir "${line#*=}"; then
            die "--env-file $file 第 $n 行: PREDICT_DATA_DIR 必须是绝对路径，且只含字母、数字和 ._/@+-"
        fi
        printf '%s\n' "$line"
    done <"$file"
}

# The value of KEY in an --env-file ('' when absent; the last line wins).
env_file_value() {
    local key=$1 file=$2 kv val=''
    while IFS= read -r kv; do
        if [ "${kv%%=*}" = "$key" ]; then val=${kv#*=}; fi
    done < <(env_file_pairs "$file")
    printf '%s\n' "$val"
}

managed_key() {
    case $1 in PREDICT_PORT | PREDICT_HOST | PREDICT_API_TOKEN | PREDICT_ALLOW_ANONYMOUS) return 0 ;; esac
    return 1
}

# PREDICT_DATA_DIR: the directory every machine of a distributed service
# shares (an NFS mount, say) instead of this deploy's shared/. It ends up in
# systemd units (ReadWritePaths) and shell commands: absolute, plain
# characters, no `..`.
valid_data_dir() {
    [[ $1 =~ ^/[A-Za-z0-9._/@+-]*[A-Za-z0-9._@+-]$ ]] && [[ /$1/ != */../* ]]
}

# The value KEY will have in service.env once this run is done: the last of
# --env and --env-file (the file wins, as ensure_env_file writes them), else
# what service.env holds now ('' when unset).
planned_env() {
    local key=$1 user=$2 kv val='' found=no
    for kv in ${OPT_ENV[@]+"${OPT_ENV[@]}"}; do
        if [ "${kv%%=*}" = "$key" ]; then val=${kv#*=} && found=yes; fi
    done
    if [ -n "$OPT_ENV_FILE" ]; then
        while IFS= read -r kv; do
            if [ "${kv%%=*}" = "$key" ]; then val=${kv#*=} && found=yes; fi
        done < <(env_file_pairs "$OPT_ENV_FILE")
    fi
    if [ $found = no ]; then val=$(env_value "$key" "$user"); fi
    printf '%s\n' "$val"
}

# check_planned_env USER ROLE: the settings the role cannot run without, and
# the data dir, as service.env will be -- refused before anything changes.
# Values are never shown: a Redis or database URL may hold a password.
check_planned_env() {
    local user=$1 role=$2 queue tasks http missing=''
    queue=$(planned_env PREDICT_QUEUE_URL "$user")
    tasks=$(planned_env PREDICT_TASKS_DB_URL "$user")
    if [ "$role" = worker ]; then
        [ -n "$queue" ] || missing="PREDICT_QUEUE_URL（Redis）"
        [ -n "$tasks" ] || missing="${missing:+$missing 和 }PREDICT_TASKS_DB_URL（PostgreSQL）"
        if [ -n "$missing" ]; then
            die "执行机器（--role worker）需要 PREDICT_QUEUE_URL 与 PREDICT_TASKS_DB_URL（与 API 实例相同的 Redis 和 PostgreSQL），缺少 $missing：写进 --env-file 文件后再部署；未做任何改动"
        fi
    fi
    if [ -n "$queue" ]; then
        case $queue in
            redis://* | rediss://* | unix://*) ;;
            *) die "PREDICT_QUEUE_URL 应形如 redis://主机:6379/0；未做任何改动" ;;
        esac
        case $tasks in
            postgresql:* | postgresql+*:* | postgres:*) ;;
            *) die "分布式模式（设置了 PREDICT_QUEUE_URL）需要 PREDICT_TASKS_DB_URL 指向所有 API 实例与执行机器共用的 PostgreSQL；未做任何改动" ;;
        esac
    fi
    http=$(planned_env PREDICT_HTTP_WORKERS "$user")
    if [ -z "$queue" ] && [[ $http =~ ^[0-9]+$ ]] && [ "$http" -gt 1 ]; then
        die "PREDICT_HTTP_WORKERS=$http 需要分布式模式（PREDICT_QUEUE_URL）：内置模式的任务池与任务索引只在一个进程中；未做任何改动"
    fi
    extra_dirs "$user" >/dev/null
}

# The service's data dir: shared/, or PREDICT_DATA_DIR of service.env
# (checked again here: service.env is the operator's to edit).
data_dir() {
    local dir
    dir=$(planned_env PREDICT_DATA_DIR "$1")
    if [ -z "$dir" ]; then
        printf '%s\n' "$SHARED"
        return 0
    fi
    valid_data_dir "$dir" || die "PREDICT_DATA_DIR 必须是绝对路径，且只含字母、数字和 ._/@+-: $dir"
    case $dir/ in
        "$RELEASES/"* | "$NGINX_DIR/"* | "$BASE/current/"* | "$BASE/previous/"* | "$SHARED/venvs/"*)
            die "PREDICT_DATA_DIR 不能位于部署目录的 releases/、nginx/、shared/venvs/ 之内（部署会替换或删除它们）: $dir"
            ;;
    esac
    printf '%s\n' "$dir"
}

# The directory of PREDICT_STORAGE_URL=file:///path (or a bare absolute
# path): where uploads and results go when only they are on the shared
# mount ('' for none, and for s3://, whose files are cached in the data dir).
storage_dir() {
    local url dir
    url=$(planned_env PREDICT_STORAGE_URL "$1")
    case $url in
        file://localhost/*) dir=${url#file://localhost} ;;
        file:///*) dir=${url#file://} ;;
        /*) dir=$url ;;
        *) return 0 ;;
    esac
    while [ "${#dir}" -gt 1 ] && [ "${dir%/}" != "$dir" ]; do dir=${dir%/}; done
    valid_data_dir "$dir" || die "PREDICT_STORAGE_URL 的目录必须是绝对路径，且只含字母、数字和 ._/@+-: $dir"
    printf '%s\n' "$dir"
}

# The directories outside shared/ the service writes to: the data dir and
# the file storage's, when service.env names them (space-separated; each goes
# into the units' ReadWritePaths).
extra_dirs() {
    local data storage out=''
    data=$(data_dir "$1") || exit 1
    storage=$(storage_dir "$1") || exit 1
    if [ "$data" != "$SHARED" ]; then out=$data; fi
    if [ -n "$storage" ] && [ "$storage" != "$data" ]; then out="${out:+$out }$storage"; fi
    printf '%s\n' "$out"
}

# ensure_data_dir USER: the data dir and the file storage's directory, when
# outside shared/, exist (created for the service's user when missing) and
# the service's user can write there -- on NFS that needs the same uid on
# every machine. 1 (with a warning) if not.
ensure_data_dir() {
    local user=$1 dirs dir
    dirs=$(extra_dirs "$user") || return 1
    for dir in $dirs; do
        if [ ! -d "$dir" ]; then
            mkdir -p "$dir" || return 1
            if [ "$user" != - ]; then chown "$user:$(user_group "$user")" "$dir" || return 1; fi
            chmod 750 "$dir" || return 1
            say "已建立目录 $dir（分布式模式下所有机器应挂载同一个共享目录）"
        fi
        if ! as_user "$user" test -w "$dir" || ! as_user "$user" test -x "$dir"; then
            warn "服务用户 $(user_label "$user") 不能读写 $dir（共享目录须允许它读写；NFS 上各机器的该用户 uid 须相同）"
            return 1
        fi
    done
}

# A value of service.env, read as the service's user ('' when unset).
env_value() {
    local key=$1 user=$2 line val=''
    if [ "$user" != - ] && ! id -u "$user" >/dev/null 2>&1; then user=-; fi # no such user yet
    while IFS= read -r line; do
        [ "${line%%=*}" = "$key" ] && val=${line#*=}
    done < <(as_user "$user" cat -- "$ENV_FILE" 2>/dev/null || true)
    printf '%s\n' "$val"
}

# ===========================================================================
# Virtualenvs
# ===========================================================================

# ensure_venv RELEASE_DIR PYTHON VENV_FROM: RELEASE_DIR/.venv -> shared/venvs/<key>.
#
# Keyed by requirements.txt, the interpreter and the seed environment: a deploy
# that changes none of them reuses the venv (seconds, not minutes), one that
# changes requirements gets a fresh one while the old release keeps its own
# for rollback. Built in place and marked complete last, so a half-built venv
# is never used (it is rebuilt). Root's: the service's user only reads it.
#
# Called as `ensure_venv ... || ...`, where errexit does not apply, so every
# step checks its own result and the function returns 1 (never exits), letting
# the caller mark the release failed.
ensure_venv() {
    local release_dir=$1 python=$2 venv_from=$3 base_py key vdir req=$1/requirements.txt
    if [ -n "$venv_from" ]; then
        base_py=$venv_from/bin/python
        if [ ! -x "$base_py" ]; then
            warn "--venv-from $venv_from 不是虚拟环境（没有 bin/python）"
            return 1
        fi
    else
        base_py=$(command -v "$python" || true)
        if [ -z "$base_py" ]; then
            warn "目标机上没有 $python（需要 Python >= 3.11；可用 --python 指定）"
            return 1
        fi
    fi
    if ! "$base_py" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)'; then
        warn "$base_py 的版本低于 3.11（$("$base_py" -V 2>&1)）；可用 --python 指定"
        return 1
    fi
    if ! "$base_py" -c 'import venv, ensurepip' 2>/dev/null; then
        warn "$base_py 缺少 venv/ensurepip 模块（Debian/Ubuntu: apt-get install -y python3-venv）"
        return 1
    fi
    key=$({
        cat "$req"
        "$base_py" -c 'import sys; print(sys.version); print(sys.base_prefix)'
        printf '%s\n' "$venv_from"
    } | "$base_py" -c 'import hashlib, sys; print(hashlib.sha256(sys.stdin.buffer.read()).hexdigest()[:16])') ||
        return 1
    vdir=$SHARED/venvs/$key
    if [ -f "$vdir/.complete" ] && "$vdir/bin/python" -c 'import flask, gunicorn' 2>/dev/null; then
        say "复用虚拟环境 shared/venvs/$key（requirements.txt 与 Python 未变）"
    else
        rm -rf -- "$vdir"
        if [ -n "$venv_from" ]; then
            say "创建虚拟环境 shared/venvs/$key（复用 $venv_from 的包）"
            "$base_py" -m venv --without-pip "$vdir" || return 1
            # A .pth that adds the seed's site-packages (and runs their own .pth files).
            "$vdir/bin/python" - "$base_py" <<'EOF' || return 1
import subprocess, sys, sysconfig
from pathlib import Path
seed = subprocess.run(
    [sys.argv[1], "-c", "import site; print(chr(10).join(site.getsitepackages()))"],
    check=True, capture_output=True, text=True).stdout.split()
lines = [f"import site; site.addsitedir({d!r})" for d in seed]
Path(sysconfig.get_paths()["purelib"], "_venv_from.pth").write_text("\n".join(lines) + "\n")
EOF
        else
            say "创建虚拟环境 shared/venvs/$key（$base_py）"
            "$base_py" -m venv "$vdir" || return 1
        fi
        say "安装依赖 requirements.txt（pip；镜像源可在服务器的 /etc/pip.conf 或 PIP_INDEX_URL 中设置）"
        if ! "$vdir/bin/python" -m pip install --disable-pip-version-check --no-input -q -r "$req"; then
            rm -rf -- "$vdir"
            warn "pip 安装依赖失败"
            return 1
        fi
        touch "$vdir/.complete" || return 1
    fi
    ln -sfn "../../shared/venvs/$key" "$release_dir/.venv" || return 1
    if ! "$release_dir/.venv/bin/python" -c 'import flask, gunicorn'; then
        warn "虚拟环境不可用：无法导入 flask / gunicorn"
        return 1
    fi
}

# Whether the service's user can run the release's interpreter with its
# packages (a pyenv under /root, say, is root's alone).
user_can_run() {
    [ "$1" != - ] || return 0
    (cd / && as_user "$1" "$2/.venv/bin/python" -c 'import flask, gunicorn' 2>/dev/null)
}

# ===========================================================================
# The service: systemd units, or pid-file processes (args: the seven words)
# ===========================================================================

systemd_available() {
    [ -d /run/systemd/system ] && command -v systemctl >/dev/null 2>&1 && [ "$(id -u)" = 0 ]
}

unit_user() {
    if [ "$1" = - ]; then id -un; else echo "$1"; fi
}

# fill_unit TEMPLATE NAME USER MEMORY_MAX EXTRA_DIRS: a unit template of the
# release, filled in. The units run BASE/current/deploy/run-service.sh, so a
# rollback needs no new unit. The directories outside shared/ that
# service.env names (extra_dirs) are writable for the service too.
fill_unit() {
    local extra=${5:+ $5}
    sed -e "s|@BASE@|$BASE|g" -e "s|@NAME@|$2|g" -e "s|@USER@|$3|g" -e "s|@SHARED@|$SHARED|g" \
        -e "s|@MEMORY_MAX@|$4|g" -e "s| @DATA_DIR@|$extra|g" "$1"
}

# service_unit / worker_unit RELEASE_DIR NAME USER MEMORY_MAX EXTRA_DIRS
service_unit() { fill_unit "$1/deploy/prediction-service.service.in" "${@:2}"; }
worker_unit() { fill_unit "$1/deploy/prediction-worker.service.in" "${@:2}"; }

# nginx_unit NAME: the unit of the service's nginx (template next to this script).
nginx_unit() {
    local bin opts
    bin=$(nginx_binary) || bin=/usr/sbin/nginx
    opts=$(nginx_args | tr '\n' ' ')
    sed -e "s|@NAME@|$1|g" -e "s|@NGINX@|$bin|g" -e "s|@NGINX_ARGS@|${opts% }|g" \
        -e "s|@PREFIX@|$NGINX_DIR|g" -e "s|@WORKER_USER@|$(nginx_worker_user | cut -d' ' -f1)|g" \
        "$HERE/prediction-nginx.service.in"
}

# install_units RELEASE_DIR SERVICE...: the units of the parts the service
# has (the API's two, the workers' one), as deploy.conf now describes it.
install_units() {
    local release_dir=$1
    shift
    local name=$2 user memory_max data
    user=$(conf_get SERVICE_USER)
    memory_max=$(conf_get MEMORY_MAX)
    if [ -n "$user" ] && ! valid_user "$user"; then die "$CONF 中的 SERVICE_USER 无效: $user"; fi
    valid_memory "${memory_max:-$DEFAULT_MEMORY_MAX}" || die "$CONF 中的 MEMORY_MAX 无效: $memory_max"
    data=$(extra_dirs "$6") || exit 1
    if has_api "$@"; then
        service_unit "$release_dir" "$name" "${user:-$(id -un)}" "${memory_max:-$DEFAULT_MEMORY_MAX}" "$data" |
            write_root_file "/etc/systemd/system/$name.service" 644
        if proxied "$@"; then
            nginx_unit "$name" | write_root_file "/etc/systemd/system/$name-nginx.service" 644
        fi
    fi
    if wants_worker "$@"; then
        worker_unit "$release_dir" "$name" "${user:-$(id -un)}" "${memory_max:-$DEFAULT_MEMORY_MAX}" "$data" |
            write_root_file "/etc/systemd/system/$name-worker.service" 644
    fi
    systemctl daemon-reload
}

service_start() {
    if has_api "$@"; then
        require_token "$6"
        if [ "$1" = systemd ]; then
            say "启动 systemd 单元 $2"
            systemctl enable --quiet "$2"
            systemctl start "$2"
        else
            start_pid "$6"
        fi
        if proxied "$@"; then
            write_nginx_conf "$@" || die "nginx 配置检查未通过（见上）"
            if [ "$1" = systemd ]; then
                systemctl enable --quiet "$2-nginx"
                systemctl start "$2-nginx"
            else
                start_nginx_pid
            fi
        fi
    fi
    if wants_worker "$@"; then start_worker "$@"; fi
}

# Every process of the parts the service has, whichever of them runs (a
# proxy left from an earlier deploy included; the workers of an `all`
# machine also when service.env no longer asks for them).
service_stop() {
    if has_api "$@"; then
        if [ "$1" = systemd ]; then
            local unit
            for unit in "$2-nginx" "$2"; do
                if systemctl is-active --quiet "$unit" || systemctl is-failed --quiet "$unit"; then
                    say "停止 systemd 单元 $unit"
                    systemctl stop "$unit" || true
                fi
                # Stopped means stopped, also after a reboot; deploy/restart enable it again.
                systemctl disable --quiet "$unit" 2>/dev/null || true
            done
        else
            stop_nginx_pid
            stop_pid
        fi
    fi
    if [ "$7" != api ]; then stop_worker "$@"; fi
}

# Running: gunicorn, and nginx in front of it when the deploy has one; the
# workers when the service has them.
service_running() {
    if has_api "$@"; then
        backend_running "$@" || return 1
        if proxied "$@"; then proxy_running "$@" || return 1; fi
    fi
    if wants_worker "$@"; then worker_running "$@" || return 1; fi
}

backend_running() {
    if [ "$1" = systemd ]; then
        systemctl is-active --quiet "$2"
    else
        is_ours "$(read_pid "$PIDFILE")"
    fi
}

proxy_running() {
    if [ "$1" = systemd ]; then
        systemctl is-active --quiet "$2-nginx"
    else
        nginx_is_ours "$(read_pid "$NGINX_PID")"
    fi
}

worker_running() {
    if [ "$1" = systemd ]; then
        systemctl is-active --quiet "$2-worker"
    else
        worker_is_ours "$(read_pid "$WORKER_PIDFILE")"
    fi
}

# The ports the service as described holds while it runs.
ports_held() {
    local -a held=()
    has_api "$@" || return 0 # a worker machine listens on no port
    if backend_running "$@"; then
        if proxied "$@"; then held+=("$5"); else held+=("$4"); fi
    fi
    if proxied "$@" && proxy_running "$@"; then held+=("$4"); fi
    # A proxy of ours still up while its deploy.conf is from before nginx.
    if ! proxied "$@" && [ "$1" = pid ] && nginx_is_ours "$(read_pid "$NGINX_PID")"; then held+=("$4"); fi
    echo "${held[*]-}"
}

# The pid of the service (gunicorn) or of its proxy (nginx): systemd's main pid,
# or the pid file's -- only when it still is the process we started.
service_pid() { managed_pid "$1" "$2" "$PIDFILE" is_ours; }
proxy_pid() { managed_pid "$1" "$2-nginx" "$NGINX_PID" nginx_is_ours; }
worker_pid() { managed_pid "$1" "$2-worker" "$WORKER_PIDFILE" worker_is_ours; }

managed_pid() {
    local manager=$1 unit=$2 pidfile=$3 check=$4 pid
    if [ "$manager" = systemd ]; then
        pid=$(systemctl show -p MainPID --value "$unit" 2>/dev/null || echo 0)
        [ "$pid" != 0 ] && echo "$pid"
    else
        pid=$(read_pid "$pidfile")
        if "$check" "$pid"; then echo "$pid"; fi
    fi
    return 0
}

show_log_tail() {
    local n=40 f
    if [ "$1" = systemd ]; then
        local -a args=()
        for f in $(unit_names "$@"); do args+=(-u "$f"); done
        journalctl ${args[@]+"${args[@]}"} -n "$n" --no-pager 2>/dev/null || true
    else
        local -a logs=()
        if has_api "$@"; then logs+=("$OUTLOG"); fi
        if wants_worker "$@"; then logs+=("$WORKER_OUTLOG"); fi
        for f in ${logs[@]+"${logs[@]}"}; do
            [ -f "$f" ] || continue
            echo "---- $f（最后 $n 行）----"
            tail -n "$n" "$f" || true
        done
    fi
    if has_api "$@" && [ -s "$NGINX_DIR/error.log" ]; then
        echo "---- $NGINX_DIR/error.log（最后 10 行）----"
        tail -n 10 "$NGINX_DIR/error.log" || true
    fi
}

# ---------------------------------------------------------------------------
# Pid files: the pid, and beside it (FILE.start) the process's start time
# ---------------------------------------------------------------------------
#
# A pid alone names whatever process has that number now: after a crash or a
# reboot that may be anything -- a `tail -F .../gunicorn.log` matched the old
# "gunicorn and the deploy path in its command line" test and was stopped. A
# process's start time (field 22 of /proc/PID/stat) never changes and two
# processes with the same pid never share it, so a pid whose start time is
# not the recorded one is stale and is never signalled.

read_pid() {
    local pid=''
    if [ -f "$1" ]; then read -r pid <"$1" || true; fi
    printf '%s\n' "$pid"
}

# The start time of a live process (clock ticks after boot); fails for one
# that is gone or a zombie.
proc_start() {
    local stat rest
    local -a f
    stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
    rest=${stat##*) }
    read -ra f <<<"$rest"
    [ "${f[0]:-Z}" != Z ] && [ -n "${f[19]:-}" ] || return 1
    printf '%s\n' "${f[19]}"
}

# record_pid FILE PID: FILE.start first, then FILE, each renamed into place.
record_pid() {
    local start
    start=$(proc_start "$2") || start=gone
    printf '%s\n' "$start" | write_root_file "$1.start" 644
    printf '%s\n' "$2" | write_root_file "$1" 644
}

# started_as_recorded FILE PID: the live process PID is the one FILE recorded.
started_as_recorded() {
    local want='' have
    [[ $2 =~ ^[0-9]+$ ]] || return 1
    have=$(proc_start "$2") || return 1
    if [ -f "$1.start" ]; then read -r want <"$1.start" || true; fi
    [ -n "$want" ] && [ "$want" = "$have" ]
}

cmdline_of() {
    tr '\0' ' ' <"/proc/$1/cmdline" 2>/dev/null
}

# A pid is this service's only if it started when the pid file says, is
# gunicorn (or the runner that execs it) and belongs to this deploy path: its
# command line names the path, or -- when setproctitle rewrote the command
# line -- its working directory is one of our releases. A pid file from before
# start times were recorded names gunicorn's master only by its exact command
# (python -m gunicorn -c <a release>/gunicorn.conf.py), once, until the next
# start records it properly.
is_ours() {
    local pid=$1 cmd cwd
    [[ $pid =~ ^[0-9]+$ ]] || return 1
    proc_start "$pid" >/dev/null || return 1
    cmd=$(cmdline_of "$pid") || return 1
    if [ -f "$PIDFILE.start" ]; then
        started_as_recorded "$PIDFILE" "$pid" || return 1
        case $cmd in *gunicorn* | *run-service.sh*) ;; *) return 1 ;; esac
    else
        case $cmd in *"/.venv/bin/python -m gunicorn -c $RELEASES/"*"/gunicorn.conf.py "*) ;; *) return 1 ;; esac
    fi
    case $cmd in *"$BASE/"*) return 0 ;; esac
    cwd=$(readlink "/proc/$pid/cwd" 2>/dev/null) || return 1
    case $cwd/ in "$RELEASES/"*) return 0 ;; esac
    return 1
}

# nginx's master of this deploy: started as recorded, and its command line
# names nginx and this deploy's nginx directory.
nginx_is_ours() {
    local pid=$1 cmd
    started_as_recorded "$NGINX_PID" "$pid" || return 1
    cmd=$(cmdline_of "$pid") || return 1
    case $cmd in *nginx*"$NGINX_DIR/"*) return 0 ;; esac
    return 1
}

# The worker command of this deploy: started as recorded, and it is the
# worker command (or the runner that execs it) of one of our releases.
worker_is_ours() {
    local pid=$1 cmd cwd
    started_as_recorded "$WORKER_PIDFILE" "$pid" || return 1
    cmd=$(cmdline_of "$pid") || return 1
    case $cmd in *destination_predictor.worker* | *run-service.sh*) ;; *) return 1 ;; esac
    case $cmd in *"$BASE/"*) return 0 ;; esac
    cwd=$(readlink "/proc/$pid/cwd" 2>/dev/null) || return 1
    case $cwd/ in "$RELEASES/"*) return 0 ;; esac
    return 1
}

# launch USER PIDFILE LOG ARG...: `run-service.sh BASE ARG...` in the
# background as USER, its pid recorded in PIDFILE. The log is opened by the
# service's own process after it became USER, so root never writes through a
# name in shared/ that the service could have pointed elsewhere.
launch() {
    local user=$1 pidfile=$2 log=$3 runner=$BASE/current/deploy/run-service.sh pid
    shift 3
    [ -f "$runner" ] || die "$runner 不存在"
    user_prefix "$user"
    # setsid: its own session, so closing the ssh session does not hang it up
    # and its process group holds exactly the service and its job children.
    # All descriptors redirected so ssh does not wait for them; fd 9 is the lock.
    # Every step execs the next, so $! is gunicorn's master (or the workers'
    # pool) itself.
    local -a detach=(nohup)
    if command -v setsid >/dev/null 2>&1; then detach=(setsid nohup); fi
    # shellcheck disable=SC2016 # expanded by the inner bash
    "${detach[@]}" ${USER_PREFIX[@]+"${USER_PREFIX[@]}"} bash -c 'exec >>"$0" 2>&1 && exec bash "$@"' \
        "$log" "$runner" "$BASE" "$@" </dev/null >/dev/null 2>&1 9>&- &
    pid=$!
    record_pid "$pidfile" "$pid"
    say "已启动$([ $# -eq 0 ] || echo "执行进程") (pid $pid，用户 $(user_label "$user")，pid 文件 $pidfile)"
}

# start_pid USER: gunicorn; start_worker SERVICE...: the worker command.
start_pid() { launch "$1" "$PIDFILE" "$OUTLOG"; }

start_worker() {
    if [ "$1" = systemd ]; then
        say "启动 systemd 单元 $2-worker"
        systemctl enable --quiet "$2-worker"
        systemctl start "$2-worker"
    else
        launch "$6" "$WORKER_PIDFILE" "$WORKER_OUTLOG" worker
    fi
}

stop_pid() { stop_recorded "$PIDFILE" is_ours "$STOP_TIMEOUT" 服务; }

# The workers get SIGTERM (their pool tells each to stop after its current
# job), then, after WORKER_STOP_TIMEOUT, SIGKILL with their jobs: the API
# instances run those tasks again. Quiet where there never was a worker.
stop_worker() {
    if [ "$1" = systemd ]; then
        local unit=$2-worker
        if systemctl is-active --quiet "$unit" || systemctl is-failed --quiet "$unit"; then
            say "停止 systemd 单元 $unit（正在运行的作业最多再运行 ${WORKER_STOP_TIMEOUT}s，之后由其他执行进程重新运行）"
            systemctl stop "$unit" || true
        fi
        systemctl disable --quiet "$unit" 2>/dev/null || true
    elif [ -f "$WORKER_PIDFILE" ]; then
        stop_recorded "$WORKER_PIDFILE" worker_is_ours "$WORKER_STOP_TIMEOUT" 执行进程
    fi
}

# stop_recorded PIDFILE CHECK TIMEOUT LABEL: SIGTERM to the process PIDFILE
# names -- only when CHECK says it still is the one we started -- SIGKILL
# after TIMEOUT seconds, then whatever is left in its process group.
stop_recorded() {
    local pidfile=$1 check=$2 timeout=$3 label=$4 pid i
    pid=$(read_pid "$pidfile")
    if [ -z "$pid" ]; then
        say "${label}未运行（没有 pid 文件）"
        return 0
    fi
    if ! "$check" "$pid"; then
        say "pid 文件中的进程 $pid 已退出（该 pid 现在不是本服务启动的那个进程），只删除 pid 文件"
        rm -f "$pidfile" "$pidfile.start"
        return 0
    fi
    say "停止${label} (pid $pid)"
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < timeout * 2; i++)); do
        "$check" "$pid" || break
        sleep 0.5
    done
    if "$check" "$pid"; then
        warn "${label} $timeout 秒内未退出，强制结束 (SIGKILL)"
        kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid" 2>/dev/null || true
    fi
    # Job children left in the service's own process group (it was started
    # with setsid, so the group id is the master's pid and no one else's).
    if kill -0 -- "-$pid" 2>/dev/null; then
        kill -TERM -- "-$pid" 2>/dev/null || true
        for ((i = 0; i < 20; i++)); do
            kill -0 -- "-$pid" 2>/dev/null || break
            sleep 0.25
        done
        kill -KILL -- "-$pid" 2>/dev/null || true
    fi
    for ((i = 0; i < 20; i++)); do
        "$check" "$pid" || break
        sleep 0.25
    done
    rm -f "$pidfile" "$pidfile.start"
}

# ===========================================================================
# nginx: the service's own instance in front of gunicorn
# ===========================================================================

nginx_binary() {
    command -v nginx 2>/dev/null && return 0
    [ -x /usr/sbin/nginx ] && echo /usr/sbin/nginx
}

# Debian's nginx, installed when missing (as root, with apt-get). The
# package starts and enables its own default site on port 80: not ours, so it
# is stopped and disabled again; this service runs its own instance.
ensure_nginx() {
    nginx_binary >/dev/null && return 0
    if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
        die "需要 nginx 作为服务前面的反向代理：先安装（Debian/Ubuntu: apt-get install -y nginx），或以 root 部署（自动安装）"
    fi
    say "安装 nginx（apt-get install nginx）"
    local out
    if ! out=$(DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends nginx 2>&1) &&
        ! out=$({ apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends nginx; } 2>&1); then
        printf '%s\n' "$out" | tail -n 20 >&2
        die "安装 nginx 失败（apt-get install -y nginx）"
    fi
    if systemd_available; then
        systemctl disable --now --quiet nginx 2>/dev/null || true
    elif [ -x /etc/init.d/nginx ]; then
        /etc/init.d/nginx stop >/dev/null 2>&1 || true
        update-rc.d nginx disable >/dev/null 2>&1 || true
    fi
    say "已安装 nginx；已停用软件包自带的默认站点服务（80 端口）——本服务使用自己的 nginx 实例"
}

# Who nginx's workers run as: the distribution's nginx user (www-data on
# Debian) when the master is root -- never the service's user, which owns
# the data -- and nobody's choice when not root (the user line is omitted).
nginx_worker_user() {
    local u
    [ "$(id -u)" = 0 ] || return 0
    for u in www-data nginx nobody; do
        if id -u "$u" >/dev/null 2>&1; then
            echo "$u $(id -gn "$u")"
            return 0
        fi
    done
}

# The command-line options of this deploy's nginx, one per line.
nginx_args() {
    printf '%s\n' -p "$NGINX_DIR/" -c "$NGINX_CONF"
    # -e (nginx >= 1.19.5): its start-up errors into our log, not /var/log/nginx.
    if "$(nginx_binary || echo nginx)" -h 2>&1 | grep -q -- '-e filename'; then
        printf '%s\n' -e "$NGINX_DIR/error.log"
    fi
}

# nginx_conf MANAGER NAME BIND PORT BACKEND USER: deploy/nginx.conf.in filled in.
nginx_conf() {
    local bind=$3 port=$4 backend=$5 listen worker user_line mb body
    case $bind in
        0.0.0.0 | '') listen=$port ;;
        :: | '[::]') listen="[::]:$port ipv6only=off" ;;
        *:*) listen="[$bind]:$port" ;;
        *) listen="$bind:$port" ;;
    esac
    worker=$(nginx_worker_user)
    if [ -n "$worker" ]; then
        user_line="user $worker;"
    else
        user_line="# user: not root, so nginx runs as $(id -un) and cannot switch"
    fi
    # The service's own limit (service.env), plus 1 MB for the form's other fields.
    mb=$(env_value PREDICT_MAX_UPLOAD_MB "$6")
    if [ -z "$mb" ]; then
        mb=50
    elif ! [[ $mb =~ ^[0-9]+([.][0-9]+)?$ ]] || [[ $mb =~ ^0+([.]0*)?$ ]]; then
        warn "service.env 中的 PREDICT_MAX_UPLOAD_MB 不是正数（$mb），nginx 按 50 MB 限制请求体"
        mb=50
    fi
    body=$(awk -v mb="$mb" 'BEGIN { printf "%d", mb * 1048576 + 1048576 + 0.999999 }')
    sed -e "s|@USER_DIRECTIVE@|$user_line|" -e "s|@PREFIX@|$NGINX_DIR|g" -e "s|@LISTEN@|$listen|g" \
        -e "s|@BACKEND@|127.0.0.1:$backend|g" -e "s|@MAX_BODY@|$body|g" -e "s|@MAX_UPLOAD_MB@|$mb|g" \
        -e "s|@NAME@|$2|g" "$HERE/nginx.conf.in"
}

# The config for the service as described, checked by `nginx -t` in a file of
# its own (0: fine). With WRITE, it then replaces nginx.conf.
nginx_conf_check() {
    local write=$1
    shift
    proxied "$@" || return 0
    local bin tmp out
    bin=$(nginx_binary) || die "需要 nginx（apt-get install -y nginx）"
    mkdir -p "$NGINX_DIR"
    tmp=$(mktemp "$NGINX_DIR/nginx.conf.XXXXXX")
    nginx_conf "$@" >"$tmp"
    chmod 644 "$tmp"
    local -a args
    mapfile -t args < <(nginx_args)
    args[3]=$tmp # -c
    if ! out=$("$bin" -t -q "${args[@]}" 2>&1); then
        printf '%s\n' "$out" >&2
        rm -f "$tmp"
        return 1
    fi
    if [ "$write" = write ]; then mv -f "$tmp" "$NGINX_CONF"; else rm -f "$tmp"; fi
}

nginx_conf_valid() { nginx_conf_check check "$@"; }
write_nginx_conf() { nginx_conf_check write "$@"; }

start_nginx_pid() {
    local bin pid
    bin=$(nginx_binary) || die "需要 nginx（apt-get install -y nginx）"
    local -a args
    mapfile -t args < <(nginx_args)
    # Its own session and process group, like the service; `daemon off;` in
    # the config keeps the master in the foreground, so $! is the master.
    local -a detach=(nohup)
    if command -v setsid >/dev/null 2>&1; then detach=(setsid nohup); fi
    "${detach[@]}" "$bin" "${args[@]}" </dev/null >>"$NGINX_DIR/error.log" 2>&1 9>&- &
    pid=$!
    record_pid "$NGINX_PID" "$pid"
    say "已启动 nginx (pid $pid，配置 $NGINX_CONF)"
}

stop_nginx_pid() {
    local pid i
    pid=$(read_pid "$NGINX_PID")
    [ -n "$pid" ] || return 0
    if ! nginx_is_ours "$pid"; then
        rm -f "$NGINX_PID" "$NGINX_PID.start"
        return 0
    fi
    say "停止 nginx (pid $pid)"
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < 40; i++)); do
        nginx_is_ours "$pid" || break
        sleep 0.25
    done
    if nginx_is_ours "$pid"; then
        kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid" 2>/dev/null || true
    fi
    rm -f "$NGINX_PID" "$NGINX_PID.start"
}

# ===========================================================================
# Health (args: the seven words)
# ===========================================================================

# Where this machine reaches a service bound to BIND.
health_host() {
    case $1 in
        0.0.0.0 | '') echo 127.0.0.1 ;;
        :: | '[::]') echo '[::1]' ;;
        *:*) echo "[$1]" ;;
        *) echo "$1" ;;
    esac
}

# port_host PORT SERVICE...: the address to try PORT at -- gunicorn's is
# always on 127.0.0.1, the public one where nginx listens.
port_host() {
    local p=$1
    shift
    if proxied "$@" && [ "$p" = "$5" ]; then echo 127.0.0.1; else health_host "$3"; fi
}

port_in_use() {
    local h=${1#[}
    h=${h%]}
    (exec 3<>"/dev/tcp/$h/$2") 2>/dev/null
}

# The release whose code and venv run the probe: `current`, or -- when current
# predates destination_predictor/client/probe.py (a rollback to a release
# deployed before it existed) -- the newest release that has both.
probe_release() {
    local r
    local -a candidates=("$BASE/current")
    while IFS= read -r r; do candidates+=("$RELEASES/$r"); done < <(release_names)
    for r in "${candidates[@]}"; do
        if [ -f "$r/destination_predictor/client/probe.py" ] && [ -x "$r/.venv/bin/python" ]; then
            printf '%s\n' "$r"
            return 0
        fi
    done
    return 1
}

# One probe through the project's own client, from outside: through nginx,
# as the service's user (it reads the token file, which is that user's, and
# the token is never put on a command line). /health must say ok,
# /api/majors must accept the deploy's token and refuse a request without it
# (401). One line of output either way.
probe() {
    local release url
    url=http://$(health_host "$3"):$4
    if ! release=$(probe_release); then
        echo "没有可用于健康检查的版本（需要含 destination_predictor/client/probe.py 和 .venv 的版本）"
        return 1
    fi
    (cd "$release" && as_user "$6" .venv/bin/python -m destination_predictor.client.probe \
        --base-url "$url" --token-file "$TOKEN_FILE" --timeout 5)
}

# The workers' check: `run-service.sh BASE check-worker PID` as the service's
# user -- the workers' own settings (service.env, which only that user
# reads), the current release's code (destination_predictor/worker/probe.py):
# PREDICT_MAX_WORKERS RQ workers below PID registered with Redis. One line.
worker_probe() {
    local pid
    pid=$(worker_pid "$@")
    if [ -z "$pid" ]; then
        echo "执行进程未运行"
        return 1
    fi
    (cd / && as_user "$6" bash "$BASE/current/deploy/run-service.sh" "$BASE" check-worker "$pid")
}

# The number of worker processes the workers' settings ask for.
worker_count() {
    local n
    n=$(planned_env PREDICT_MAX_WORKERS "$1")
    echo "${n:-3}"
}

# Probe every second until each part is healthy (0) -- the API through nginx,
# the workers in Redis -- or until a process is gone or --health-timeout has
# passed (1, with the last probe's line).
wait_healthy() {
    local deadline=$((SECONDS + OPT_HEALTH_TIMEOUT)) out='' part
    local -a parts=()
    if has_api "$@"; then
        parts+=(probe)
        say "等待健康检查 http://$(health_host "$3"):$4/health 与 /api/majors（最多 ${OPT_HEALTH_TIMEOUT}s）"
    fi
    if wants_worker "$@"; then
        parts+=(worker_probe)
        say "等待执行进程在 Redis 登记（$(worker_count "$6") 个，最多 ${OPT_HEALTH_TIMEOUT}s）"
    fi
    sleep 1
    for part in ${parts[@]+"${parts[@]}"}; do
        while :; do
            if out=$("$part" "$@" 2>&1); then
                say "健康检查通过: $out"
                break
            fi
            if ! service_running "$@"; then
                warn "服务进程已退出，健康检查失败: $out"
                return 1
            fi
            if [ $SECONDS -ge $deadline ]; then
                warn "健康检查 ${OPT_HEALTH_TIMEOUT}s 内未通过: $out"
                return 1
            fi
            sleep 1
        done
    done
}

# ===========================================================================
# Options and main
# ===========================================================================

OPT_ROLE=
OPT_PORT=
OPT_HOST=
OPT_BACKEND_PORT=
OPT_NAME=
OPT_MANAGER=auto
OPT_USER=
OPT_MEMORY_MAX=
OPT_PYTHON=
OPT_VENV_FROM=
OPT_KEEP=
OPT_HEALTH_TIMEOUT=120
OPT_LINES=100
OPT_FOLLOW=0
OPT_ENV=()
OPT_ENV_FILE=

parse_options() {
    while [ $# -gt 0 ]; do
        case $1 in
            --follow | -f)
                OPT_FOLLOW=1
                shift
                continue
                ;;
            --*) [ $# -ge 2 ] || die "$1 需要一个值" ;;
            *) die "多余的参数: $1" ;;
        esac
        case $1 in
            --role) OPT_ROLE=$2 ;;
            --port) OPT_PORT=$2 ;;
            --host) OPT_HOST=$2 ;;
            --backend-port) OPT_BACKEND_PORT=$2 ;;
            --name) OPT_NAME=$2 ;;
            --manager) OPT_MANAGER=$2 ;;
            --user) OPT_USER=$2 ;;
            --memory-max) OPT_MEMORY_MAX=$2 ;;
            --python) OPT_PYTHON=$2 ;;
            --venv-from) OPT_VENV_FROM=$2 ;;
            --keep) OPT_KEEP=$2 ;;
            --env) OPT_ENV+=("$2") ;;
            --env-file) OPT_ENV_FILE=$2 ;;
            --health-timeout) OPT_HEALTH_TIMEOUT=$2 ;;
            --lines) OPT_LINES=$2 ;;
            *) die "未知选项: $1" ;;
        esac
        shift 2
    done

    [ -z "$OPT_ROLE" ] || valid_role "$OPT_ROLE" || die "--role 只能是 api、worker 或 all: $OPT_ROLE"
    [ -z "$OPT_PORT" ] || valid_port "$OPT_PORT" || die "--port 应为 1-65535 的整数: $OPT_PORT"
    [ -z "$OPT_BACKEND_PORT" ] || valid_port "$OPT_BACKEND_PORT" ||
        die "--backend-port 应为 1-65535 的整数: $OPT_BACKEND_PORT"
    if [ -n "$OPT_PORT" ] && [ "$OPT_BACKEND_PORT" = "$OPT_PORT" ]; then
        die "--backend-port 不能与 --port 相同（$OPT_PORT）"
    fi
    [ -z "$OPT_HOST" ] || valid_bind "$OPT_HOST" || die "--host 不是有效的地址: $OPT_HOST"
    [ -z "$OPT_NAME" ] || valid_name "$OPT_NAME" || die "--name 只能含字母、数字和 _.@-: $OPT_NAME"
    [ -z "$OPT_USER" ] || valid_user "$OPT_USER" || die "--user 不是有效的用户名: $OPT_USER"
    [ "$OPT_USER" != root ] || die "--user root：服务不以 root 运行（用默认的 $DEFAULT_USER 或另一个系统用户）"
    [ -z "$OPT_MEMORY_MAX" ] || valid_memory "$OPT_MEMORY_MAX" ||
        die "--memory-max 应形如 4G、800M、80% 或 infinity: $OPT_MEMORY_MAX"
    [ -z "$OPT_KEEP" ] || { [[ $OPT_KEEP =~ ^[0-9]+$ ]] && [ "$OPT_KEEP" -ge 2 ]; } ||
        die "--keep 应为 >= 2 的整数: $OPT_KEEP"
    [[ $OPT_HEALTH_TIMEOUT =~ ^[0-9]+$ ]] || die "--health-timeout 应为秒数: $OPT_HEALTH_TIMEOUT"
    [[ $OPT_LINES =~ ^[0-9]+$ ]] || die "--lines 应为整数: $OPT_LINES"
    case $OPT_MANAGER in auto | systemd | pid) ;; *) die "--manager 只能是 auto、systemd 或 pid" ;; esac
    local kv
    for kv in ${OPT_ENV[@]+"${OPT_ENV[@]}"}; do
        [[ $kv =~ ^[A-Za-z_][A-Za-z0-9_]*= ]] || die "--env 应为 KEY=VALUE: ${kv%%=*}"
        if managed_key "${kv%%=*}"; then
            die "${kv%%=*} 由部署脚本管理（用 --port/--host；令牌在 shared/api_token，总是启用），不能用 --env 设置"
        fi
        if secret_name "${kv%%=*}"; then
            die "${kv%%=*} 含密码等机密，不能用 --env 传递（命令行参数对本机和服务器上的所有用户可见）；请写入文件（每行 KEY=VALUE，权限 600）并用 --env-file 文件"
        fi
        if [ "${kv%%=*}" = PREDICT_DATA_DIR ] && ! valid_data_dir "${kv#*=}"; then
            die "PREDICT_DATA_DIR 必须是绝对路径，且只含字母、数字和 ._/@+-: ${kv#*=}"
        fi
    done
    if [ -n "$OPT_ENV_FILE" ]; then env_file_pairs "$OPT_ENV_FILE" >/dev/null; fi
    readonly OPT_ROLE OPT_PORT OPT_HOST OPT_BACKEND_PORT OPT_NAME OPT_MANAGER OPT_USER OPT_MEMORY_MAX \
        OPT_PYTHON OPT_VENV_FROM OPT_KEEP OPT_HEALTH_TIMEOUT OPT_LINES OPT_FOLLOW OPT_ENV OPT_ENV_FILE
}

main() {
    [ $# -ge 2 ] || die "用法: host.sh SUBCOMMAND BASE [options]（见 deploy/host.sh 开头）"
    local sub=$1 base=$2 incoming=''
    shift 2
    if [ "$sub" = activate ]; then
        [ $# -ge 1 ] || die "用法: host.sh activate BASE INCOMING [options]"
        incoming=$1
        shift
    fi
    parse_options "$@"
    if [ "$sub" = check ]; then
        check_base_path "$(absolute "$base")"
        return 0
    fi
    set_paths "$base"
    case $sub in
        activate) cmd_activate "$incoming" ;;
        preflight) cmd_preflight ;;
        status) cmd_status ;;
        logs) cmd_logs ;;
        restart) cmd_restart ;;
        stop) cmd_stop ;;
        rollback) cmd_rollback ;;
        port) cmd_port ;;
        nginx-conf) cmd_nginx_conf ;;
        unit) cmd_unit ;;
        *) die "未知子命令: $sub（可用：activate preflight status logs restart stop rollback port check nginx-conf unit）" ;;
    esac
}

main "$@"
