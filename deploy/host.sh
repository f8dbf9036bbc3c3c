#!/usr/bin/env bash
# deploy/host.sh -- the target machine's half of deploy-async.sh: everything
# that happens where the service runs.
#
#   host.sh activate  BASE INCOMING [options]  make releases/INCOMING the running release
#   host.sh status    BASE                     version, processes, health
#                                              (exit 0 healthy, 1 running but unhealthy, 3 not running)
#   host.sh logs      BASE [--lines N] [--follow]
#   host.sh restart   BASE                     restart, wait for the health check
#   host.sh stop      BASE                     stop this deploy's own service (and its nginx) only
#   host.sh rollback  BASE                     switch to `previous` (once more: back again)
#   host.sh port      BASE                     print the port the deployed service listens on
#   host.sh check     BASE [options]           only validate BASE and the options, touch nothing
#   host.sh nginx-conf BASE [options]          print the nginx config the service would run with
#   host.sh unit      BASE [options]           print the systemd units a deploy would install
#
# Options: --port N  --host ADDR  --backend-port N  --name UNIT  --manager auto|systemd|pid
#          --user NAME  --memory-max SIZE  --python PY  --venv-from DIR  --keep N
#          --env KEY=VALUE (repeatable)  --env-file FILE  --health-timeout S  --lines N  --follow
# Every subcommand accepts every option -- deploy-async.sh forwards what the
# operator gave -- and ignores the ones it has no use for.
#
# What runs: nginx on --host:--port (its own instance, config from
# deploy/nginx.conf.in) in front of gunicorn on 127.0.0.1:--backend-port,
# which runs as its own system user (--user, default prediction; created
# when missing). Both under systemd (two units) or as pid-file processes.
#
# deploy-async.sh runs this file as is for --local; over SSH it sends it --
# with deploy/common.sh, which it sources, and the templates it uses
# (deploy/nginx.conf.in, deploy/prediction-nginx.service.in) and, for
# --env-file, the secrets -- to a private temporary directory on the server
# and runs it there. The rest comes from the release it deploys
# (deploy/run-service.sh, deploy/prediction-service.service.in, and
# destination_predictor/client/probe.py for the health check).
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

# A service is passed around as six words, always in this order:
#
#   MANAGER NAME BIND PORT BACKEND USER
#
#   MANAGER  systemd | pid
#   NAME     the systemd unit name (its nginx: NAME-nginx)
#   BIND     nginx's listen address
#   PORT     nginx's port: the one clients use
#   BACKEND  gunicorn's port on 127.0.0.1; `-` for a deploy.conf from before
#            nginx, whose gunicorn listens on BIND:PORT itself
#   USER     the account the service runs as; `-` for "as this script runs"
#            (not root, or a deploy.conf from before the service user)
#
# Every function that starts, stops, finds or probes a service takes them as
# its first six arguments. `activate` holds two at once -- the service that
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
    local -a old new # MANAGER NAME BIND PORT BACKEND USER
    [ -f "$CONF" ] && had_conf=yes
    read_service old conf
    read_service new wanted
    python=$(wanted PYTHON "$OPT_PYTHON" python3)
    venv_from=$(wanted VENV_FROM "$OPT_VENV_FROM" '')
    keep=$(wanted KEEP "$OPT_KEEP" "$DEFAULT_KEEP")
    memory_max=$(wanted MEMORY_MAX "$OPT_MEMORY_MAX" "$DEFAULT_MEMORY_MAX")
    if [ "${new[0]}" = systemd ]; then check_systemd_paths "$venv_from"; fi

    # What the new service needs on this machine: nginx, its user, its data dir.
    ensure_nginx
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
    ensure_token "${new[5]}" "$python"
    ensure_env_file "${new[5]}" ${OPT_ENV[@]+"${OPT_ENV[@]}"}
    ensure_venv "$release" "$python" "$venv_from" ||
        fail_release "$release" "安装依赖失败；服务未改动（仍运行旧版本）"
    user_can_run "${new[5]}" "$release" ||
        fail_release "$release" "服务用户 ${new[5]} 无法运行 releases/$name/.venv/bin/python（它或部署目录位于该用户进不去的目录，如 /root 下的 pyenv）；用 --python 指定系统的 Python（如 /usr/bin/python3），或换一个部署目录；服务未改动"
    nginx_conf_valid "${new[@]}" ||
        fail_release "$release" "nginx 配置检查未通过（见上）；服务未改动"

    local old_release
    old_release=$(link_name current)
    if [ -n "$old_release" ] && [ ! -d "$RELEASES/$old_release" ]; then old_release=''; fi

    # Stop what runs now, but refuse first if a port the new service needs
    # is held by some other program (the old service may hold them itself:
    # that one we stop).
    local -a held=()
    if [ $had_conf = yes ]; then read -ra held <<<"$(ports_held "${old[@]}")"; fi
    local p
    for p in "${new[3]}" "${new[4]}"; do
        [ "$p" != - ] || continue
        if [[ " ${held[*]-} " == *" $p "* ]]; then continue; fi
        if port_in_use "$(port_host "$p" "${new[@]}")" "$p"; then
            fail_release "$release" "端口 $p 已被其他程序占用；服务未改动"
        fi
    done
    if [ $had_conf = yes ]; then service_stop "${old[@]}"; fi

    # Switch: keep the old deploy.conf for an automatic rollback, write the new
    # one, point `current` at the new release (atomically) and start it.
    if [ -f "$CONF" ]; then copy_root_file "$CONF" "$CONF.prev"; fi
    write_conf "${new[@]}" "$python" "$venv_from" "$keep" "$memory_max"
    if [ "${new[0]}" = systemd ]; then install_units "$release" "${new[1]}"; fi
    switch_link current "$name"
    service_start "${new[@]}"

    if ! wait_healthy "${new[@]}"; then
        roll_back_deploy "$name" "$old_release" "${new[@]}" # exits 1
    fi
    if [ -n "$old_release" ] && [ "$old_release" != "$name" ]; then
        switch_link previous "$old_release"
    fi
    prune "$keep"
    say "部署成功：releases/$name 正在运行（管理方式 ${new[0]}，nginx ${new[2]}:${new[3]} -> gunicorn 127.0.0.1:${new[4]}，用户 $(user_label "${new[5]}")）"
    say "API 令牌文件: $TOKEN_FILE（权限 600；查看：cat $TOKEN_FILE）"
    say "数据目录 PREDICT_DATA_DIR: $SHARED（uploads/ results/ tasks.sqlite3 async_api_${new[3]}.log）"
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
    if [ "${back[0]}" = systemd ]; then install_units "$RELEASES/$old_release" "${back[1]}"; fi
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
    local cur prev pid health rc=0
    cur=$(link_name current)
    prev=$(link_name previous)
    echo "部署目录:   $BASE"
    echo "当前版本:   releases/$cur"
    if [ -n "$prev" ]; then echo "上一版本:   releases/$prev"; else echo "上一版本:   （无）"; fi
    if [ "${svc[0]}" = systemd ]; then
        echo "管理方式:   systemd（单元 ${svc[1]}$(proxied "${svc[@]}" && echo "、${svc[1]}-nginx")）"
    else
        echo "管理方式:   后台进程 + pid 文件（$PIDFILE）"
    fi
    if proxied "${svc[@]}"; then
        echo "监听:       ${svc[2]}:${svc[3]}（nginx，配置 $NGINX_CONF）"
        echo "后端:       127.0.0.1:${svc[4]}（gunicorn）"
    else
        echo "监听:       ${svc[2]}:${svc[3]}（gunicorn，无 nginx：重新部署后启用）"
    fi
    echo "服务用户:   $(user_label "${svc[5]}")"
    echo "令牌文件:   $TOKEN_FILE"
    echo "数据目录:   $SHARED"
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
    exit $rc
}

cmd_logs() {
    require_deployed
    local -a svc
    read_service svc conf
    local applog=$SHARED/async_api_${svc[3]}.log proxylog=$NGINX_DIR/error.log
    if [ "${svc[0]}" = systemd ]; then
        if [ "$OPT_FOLLOW" = 1 ]; then
            exec journalctl -u "${svc[1]}" -u "${svc[1]}-nginx" -n "$OPT_LINES" -f --no-pager
        fi
        echo "==> journalctl -u ${svc[1]} <=="
        journalctl -u "${svc[1]}" -n "$OPT_LINES" --no-pager || true
        local f
        for f in "$applog" "$proxylog"; do
            if [ -s "$f" ]; then
                echo
                echo "==> $f <=="
                tail -n "$OPT_LINES" "$f"
            fi
        done
        return 0
    fi
    local files=()
    [ -f "$applog" ] && files+=("$applog")
    [ -f "$OUTLOG" ] && files+=("$OUTLOG")
    [ -s "$proxylog" ] && files+=("$proxylog")
    [ ${#files[@]} -gt 0 ] || die "还没有日志文件（$applog、$OUTLOG）"
    if [ "$OPT_FOLLOW" = 1 ]; then
        exec tail -v -n "$OPT_LINES" -F "${files[@]}"
    fi
    tail -v -n "$OPT_LINES" "${files[@]}"
}

cmd_restart() {
    require_deployed
    take_lock
    local -a svc
    read_service svc conf
    require_token "${svc[5]}" # before anything stops: no token, no (re)start
    if [ "${svc[0]}" = systemd ]; then
        say "重启 systemd 单元 ${svc[1]}"
        local -a units=("${svc[1]}")
        if proxied "${svc[@]}"; then
            write_nginx_conf "${svc[@]}" || die "nginx 配置检查未通过（见上）"
            units+=("${svc[1]}-nginx")
        fi
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
    service_stop "${svc[@]}"
    say "服务已停止（数据保留在 $SHARED）"
}

# `current` and `previous` trade places, so a second rollback undoes the
# first. The release keeps its own venv, so nothing is installed.
cmd_rollback() {
    require_deployed
    take_lock
    local -a svc
    read_service svc conf
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
    require_token "${svc[5]}"
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

cmd_port() {
    require_deployed
    conf_get PORT
}

# The nginx config for this deploy path and these options, as the service
# would start with it (for review, and for the tests that run nginx).
cmd_nginx_conf() {
    local -a svc
    read_service svc wanted
    nginx_conf "${svc[@]}"
}

# The systemd units a deploy would install, with nothing installed.
cmd_unit() {
    local -a svc
    read_service svc wanted
    local release=$BASE/current memory_max
    [ -f "$release/deploy/prediction-service.service.in" ] || release=$HERE/..
    memory_max=$(wanted MEMORY_MAX "$OPT_MEMORY_MAX" "$DEFAULT_MEMORY_MAX")
    echo "# ---- /etc/systemd/system/${svc[1]}.service ----"
    service_unit "$release" "${svc[1]}" "$(unit_user "${svc[5]}")" "$memory_max"
    echo "# ---- /etc/systemd/system/${svc[1]}-nginx.service ----"
    nginx_unit "${svc[1]}"
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
NGINX_DIR=
NGINX_CONF=
NGINX_PID=

# Fixed for the whole run: everything lives under BASE.
#
#   shared/  the service's data, root:USER 1770 -- the service writes its data
#            there, the sticky bit keeps it from renaming or replacing what
#            is root's (venvs/, deploy.conf, service.pid): this script runs
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
    NGINX_DIR=$BASE/nginx
    NGINX_CONF=$NGINX_DIR/nginx.conf
    NGINX_PID=$NGINX_DIR/nginx.pid
    readonly BASE RELEASES SHARED CONF PIDFILE TOKEN_FILE ENV_FILE OUTLOG NGINX_DIR NGINX_CONF NGINX_PID
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

# The service deploy.conf describes: MANAGER NAME BIND PORT BACKEND USER.
# Checked like flags: the file sits in the service's data dir, and its values
# end up in unit files and nginx's config.
service_in_conf() {
    local port bind name manager backend user
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
    valid_port "$port" || die "$CONF 中的 PORT 无效: $port"
    valid_bind "$bind" || die "$CONF 中的 BIND_HOST 无效: $bind"
    valid_name "$name" || die "$CONF 中的 SERVICE_NAME 无效: $name"
    [ "$backend" = - ] || valid_port "$backend" || die "$CONF 中的 BACKEND_PORT 无效: $backend"
    [ "$user" = - ] || valid_user "$user" || die "$CONF 中的 SERVICE_USER 无效: $user"
    printf '%s %s %s %s %s %s\n' "$manager" "$name" "$bind" "$port" "$backend" "$user"
}

# The service this deploy wants: MANAGER NAME BIND PORT BACKEND USER. A new
# --port without --name renames the unit with it (and, without
# --backend-port, moves gunicorn to its default port). The manager is
# detected anew each deploy.
service_wanted() {
    local port bind name manager backend user
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
    printf '%s %s %s %s %s %s\n' "$manager" "$name" "$bind" "$port" "$backend" "$user"
}

# read_service ARRAY conf|wanted: the six words into ARRAY -- the service
# deploy.conf describes, or the one this run wants. Exits on a bad value
# (a `read <<<"$(...)"` alone would carry on with nothing).
read_service() {
    local -n into=$1
    local line
    if [ "$2" = conf ]; then line=$(service_in_conf) || exit 1; else line=$(service_wanted) || exit 1; fi
    # shellcheck disable=SC2034 # assigned for the caller, through the nameref
    read -ra into <<<"$line"
}

proxied() { [ "$5" != - ]; }

user_label() {
    if [ "$1" = - ]; then echo "$(id -un)（与部署脚本相同）"; else echo "$1"; fi
}

# write_conf MANAGER NAME BIND PORT BACKEND USER PYTHON VENV_FROM KEEP MEMORY_MAX
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
        echo "MEMORY_MAX=${10}"
        echo "PYTHON=$7"
        echo "VENV_FROM=$8"
        echo "KEEP=$9"
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
        -exec chown -R -h "$user:$group" {} +
    chown -h root:root "$SHARED/venvs"
}

# Tiny scripts run as the service's user (as_user): the file is its own, and
# replaced atomically (a new file renamed over it), never rewritten in place.
# shellcheck disable=SC2016 # expanded by the inner bash
WRITE_PRIVATE='umask 077 && t=$(mktemp "$1.XXXXXX") || exit 1
cat >"$t" && chmod 600 "$t" && mv -f "$t" "$1" || { rm -f "$t"; exit 1; }'

# ensure_token USER PYTHON: generated once (openssl, else PYTHON's secrets),
# kept by every later deploy; the service's user owns it (600).
ensure_token() {
    local user=$1 token
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
# PREDICT_DATA_DIR / PREDICT_PORT / PREDICT_HOST / PREDICT_API_TOKEN 由部署脚本管理，在此设置无效。
# 含密码的设置（如 PREDICT_DATABASE_URL）用 deploy-async.sh --env-file 文件 写入，不要放在命令行上。
# 模型与培养方案：把真实文件放进 shared/models、shared/plans 即自动使用（为空时用代码自带的演示数据）。
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
        while IFS= read -r line; do pairs+=("$line"); done < <(env_file_pairs "$OPT_ENV_FILE")
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
        managed_key "${line%%=*}" && die "--env-file $file 第 $n 行: ${line%%=*} 由部署脚本管理，不能在此设置"
        printf '%s\n' "$line"
    done <"$file"
}

managed_key() {
    case $1 in PREDICT_DATA_DIR | PREDICT_PORT | PREDICT_HOST | PREDICT_API_TOKEN | PREDICT_ALLOW_ANONYMOUS) return 0 ;; esac
    return 1
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
# The service: a systemd unit, or a pid-file process (args: the six words)
# ===========================================================================

systemd_available() {
    [ -d /run/systemd/system ] && command -v systemctl >/dev/null 2>&1 && [ "$(id -u)" = 0 ]
}

unit_user() {
    if [ "$1" = - ]; then id -un; else echo "$1"; fi
}

# service_unit RELEASE_DIR NAME USER MEMORY_MAX: the release's unit template,
# filled in. It runs BASE/current/deploy/run-service.sh, so a rollback needs
# no new unit.
service_unit() {
    sed -e "s|@BASE@|$BASE|g" -e "s|@NAME@|$2|g" -e "s|@USER@|$3|g" -e "s|@SHARED@|$SHARED|g" \
        -e "s|@MEMORY_MAX@|$4|g" "$1/deploy/prediction-service.service.in"
}

# nginx_unit NAME: the unit of the service's nginx (template next to this script).
nginx_unit() {
    local bin opts
    bin=$(nginx_binary) || bin=/usr/sbin/nginx
    opts=$(nginx_args | tr '\n' ' ')
    sed -e "s|@NAME@|$1|g" -e "s|@NGINX@|$bin|g" -e "s|@NGINX_ARGS@|${opts% }|g" \
        -e "s|@PREFIX@|$NGINX_DIR|g" -e "s|@WORKER_USER@|$(nginx_worker_user | cut -d' ' -f1)|g" \
        "$HERE/prediction-nginx.service.in"
}

# install_units RELEASE_DIR NAME: both units, as deploy.conf now describes the service.
install_units() {
    local release_dir=$1 name=$2 user memory_max
    user=$(conf_get SERVICE_USER)
    memory_max=$(conf_get MEMORY_MAX)
    if [ -n "$user" ] && ! valid_user "$user"; then die "$CONF 中的 SERVICE_USER 无效: $user"; fi
    valid_memory "${memory_max:-$DEFAULT_MEMORY_MAX}" || die "$CONF 中的 MEMORY_MAX 无效: $memory_max"
    service_unit "$release_dir" "$name" "${user:-$(id -un)}" "${memory_max:-$DEFAULT_MEMORY_MAX}" |
        write_root_file "/etc/systemd/system/$name.service" 644
    if [ -n "$(conf_get BACKEND_PORT)" ]; then
        nginx_unit "$name" | write_root_file "/etc/systemd/system/$name-nginx.service" 644
    fi
    systemctl daemon-reload
}

service_start() {
    require_token "$6"
    if [ "$1" = systemd ]; then
        say "启动 systemd 单元 $2"
        systemctl enable --quiet "$2"
        systemctl start "$2"
    else
        start_pid "$6"
    fi
    proxied "$@" || return 0
    write_nginx_conf "$@" || die "nginx 配置检查未通过（见上）"
    if [ "$1" = systemd ]; then
        systemctl enable --quiet "$2-nginx"
        systemctl start "$2-nginx"
    else
        start_nginx_pid
    fi
}

# Both processes, whichever of them runs (a proxy left from an earlier
# deploy included).
service_stop() {
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
}

# Running: gunicorn, and nginx in front of it when the deploy has one.
service_running() {
    backend_running "$@" || return 1
    if proxied "$@"; then proxy_running "$@"; fi
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

# The ports the service as described holds while it runs.
ports_held() {
    local -a held=()
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
    local n=40
    if [ "$1" = systemd ]; then
        journalctl -u "$2" -u "$2-nginx" -n "$n" --no-pager 2>/dev/null || true
    elif [ -f "$OUTLOG" ]; then
        echo "---- $OUTLOG（最后 $n 行）----"
        tail -n "$n" "$OUTLOG" || true
    fi
    if [ -s "$NGINX_DIR/error.log" ]; then
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

# start_pid USER: run-service.sh in the background as USER. The log is opened
# by the service's own process after it became USER, so root never writes
# through a name in shared/ that the service could have pointed elsewhere.
start_pid() {
    local runner=$BASE/current/deploy/run-service.sh pid
    [ -f "$runner" ] || die "$runner 不存在"
    user_prefix "$1"
    # setsid: its own session, so closing the ssh session does not hang it up
    # and its process group holds exactly the service and its job children.
    # All descriptors redirected so ssh does not wait for them; fd 9 is the lock.
    # Every step execs the next, so $! is gunicorn's master itself.
    local -a detach=(nohup)
    if command -v setsid >/dev/null 2>&1; then detach=(setsid nohup); fi
    # shellcheck disable=SC2016 # expanded by the inner bash
    "${detach[@]}" ${USER_PREFIX[@]+"${USER_PREFIX[@]}"} bash -c 'exec >>"$0" 2>&1 && exec bash "$@"' \
        "$OUTLOG" "$runner" "$BASE" </dev/null >/dev/null 2>&1 9>&- &
    pid=$!
    record_pid "$PIDFILE" "$pid"
    say "已启动 (pid $pid，用户 $(user_label "$1")，pid 文件 $PIDFILE)"
}

stop_pid() {
    local pid i
    pid=$(read_pid "$PIDFILE")
    if [ -z "$pid" ]; then
        say "服务未运行（没有 pid 文件）"
        return 0
    fi
    if ! is_ours "$pid"; then
        say "pid 文件中的进程 $pid 已退出（该 pid 现在不是本服务启动的那个进程），只删除 pid 文件"
        rm -f "$PIDFILE" "$PIDFILE.start"
        return 0
    fi
    say "停止服务 (pid $pid)"
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < STOP_TIMEOUT * 2; i++)); do
        is_ours "$pid" || break
        sleep 0.5
    done
    if is_ours "$pid"; then
        warn "服务 $STOP_TIMEOUT 秒内未退出，强制结束 (SIGKILL)"
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
        is_ours "$pid" || break
        sleep 0.25
    done
    rm -f "$PIDFILE" "$PIDFILE.start"
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
# Health (args: the six words)
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

# Probe every second until healthy (0), or until a process is gone or
# --health-timeout has passed (1, with the last probe's line).
wait_healthy() {
    local deadline=$((SECONDS + OPT_HEALTH_TIMEOUT)) out=''
    say "等待健康检查 http://$(health_host "$3"):$4/health 与 /api/majors（最多 ${OPT_HEALTH_TIMEOUT}s）"
    sleep 1
    while :; do
        if out=$(probe "$@" 2>&1); then
            say "健康检查通过: $out"
            return 0
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
}

# ===========================================================================
# Options and main
# ===========================================================================

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
    done
    if [ -n "$OPT_ENV_FILE" ]; then env_file_pairs "$OPT_ENV_FILE" >/dev/null; fi
    readonly OPT_PORT OPT_HOST OPT_BACKEND_PORT OPT_NAME OPT_MANAGER OPT_USER OPT_MEMORY_MAX \
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
        status) cmd_status ;;
        logs) cmd_logs ;;
        restart) cmd_restart ;;
        stop) cmd_stop ;;
        rollback) cmd_rollback ;;
        port) cmd_port ;;
        nginx-conf) cmd_nginx_conf ;;
        unit) cmd_unit ;;
        *) die "未知子命令: $sub（可用：activate status logs restart stop rollback port check nginx-conf unit）" ;;
    esac
}

main "$@"
