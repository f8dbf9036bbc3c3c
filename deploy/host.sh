#!/usr/bin/env bash
# deploy/host.sh -- the target machine's half of deploy-async.sh: everything
# that happens where the service runs.
#
#   host.sh activate BASE INCOMING [options]  make releases/INCOMING the running release
#   host.sh status   BASE                     version, process, health
#                                             (exit 0 healthy, 1 running but unhealthy, 3 not running)
#   host.sh logs     BASE [--lines N] [--follow]
#   host.sh restart  BASE                     restart, wait for the health check
#   host.sh stop     BASE                     stop this deploy's own service only
#   host.sh rollback BASE                     switch to `previous` (once more: back again)
#   host.sh port     BASE                     print the port the deployed service listens on
#   host.sh check    BASE [options]           only validate BASE and the options, touch nothing
#
# Options: --port N  --host ADDR  --name UNIT  --manager auto|systemd|pid
#          --python PY  --venv-from DIR  --keep N  --env KEY=VALUE (repeatable)
#          --health-timeout S  --lines N  --follow
# Every subcommand accepts every option -- deploy-async.sh forwards what the
# operator gave -- and ignores the ones it has no use for.
#
# deploy-async.sh runs this file as is for --local; over SSH it sends it to a
# temporary file on the server and runs it there. So it sources nothing: what
# it needs is in this file and in the release it deploys
# (deploy/run-service.sh, deploy/prediction-service.service.in, and
# destination_predictor/client/probe.py for the health check).
#
# Reading order: the subcommands first, `activate` (one deploy) at the top;
# the helpers they use follow. main, at the very end, picks the subcommand.
set -euo pipefail

DEFAULT_PORT=8080
DEFAULT_BIND=0.0.0.0
DEFAULT_KEEP=5
STOP_TIMEOUT=45 # gunicorn's graceful_timeout (30 s) plus the job children's shutdown

say() { printf '==> %s\n' "$*"; }
warn() { printf '警告: %s\n' "$*" >&2; }
die() {
    printf '错误: %s\n' "$*" >&2
    exit 1
}

# A service is passed around as four words, always in this order:
#
#   MANAGER NAME BIND PORT   systemd|pid, the systemd unit name, listen address, port
#
# Every function that starts, stops, finds or probes a service takes them as
# its first four arguments. `activate` holds two at once -- the service that
# runs now (as the last deploy.conf describes it) and the one this deploy
# wants -- and hands each over explicitly; nothing global is swapped.

# ===========================================================================
# Subcommands
# ===========================================================================

# One deploy, from an uploaded directory to a running, health-checked release.
# Nothing that runs is touched until the new release has its venv and the port
# is known to be free; a release that fails its health check is stopped and
# the previous one brought back (see roll_back_deploy).
cmd_activate() {
    local incoming=$1
    [[ $incoming =~ ^\.incoming-[A-Za-z0-9T-]+$ ]] || die "无效的上传目录名: $incoming"
    [ -d "$RELEASES/$incoming" ] || die "上传的代码不存在: $RELEASES/$incoming"
    if [ "$OPT_MANAGER" = systemd ] && ! systemd_available; then
        die "--manager systemd：本机 systemd 未运行或当前用户不是 root"
    fi
    ensure_shared
    take_lock

    # The service as the last deploy started it, and as this one wants it
    # (the flags win, then the last deploy's values, then the defaults).
    local had_conf=no python venv_from keep
    local -a old new # [0] manager [1] unit name [2] bind address [3] port
    [ -f "$CONF" ] && had_conf=yes
    read -ra old <<<"$(service_in_conf)"
    read -ra new <<<"$(service_wanted)"
    python=$(wanted PYTHON "$OPT_PYTHON" python3)
    venv_from=$(wanted VENV_FROM "$OPT_VENV_FROM" '')
    keep=$(wanted KEEP "$OPT_KEEP" "$DEFAULT_KEEP")

    # The upload becomes releases/<UTC time>, with its token, settings and venv.
    local name release
    name=$(new_release_name)
    release=$RELEASES/$name
    mv "$RELEASES/$incoming" "$release"
    chmod +x "$release/deploy/run-service.sh"
    say "新版本 releases/$name"
    ensure_token "$python"
    ensure_env_file ${OPT_ENV[@]+"${OPT_ENV[@]}"}
    ensure_venv "$release" "$python" "$venv_from" ||
        fail_release "$release" "安装依赖失败；服务未改动（仍运行旧版本）"

    local old_release
    old_release=$(link_name current)
    if [ -n "$old_release" ] && [ ! -d "$RELEASES/$old_release" ]; then old_release=''; fi

    # Stop what runs now, but refuse first if the new port is held by some
    # other program (the old service may hold it itself: that one we stop).
    local old_running=no
    if [ $had_conf = yes ] && service_running "${old[@]}"; then old_running=yes; fi
    if [ $old_running = no ] || [ "${old[3]}" != "${new[3]}" ]; then
        if port_in_use "${new[@]}"; then
            fail_release "$release" "端口 ${new[3]} 已被其他程序占用；服务未改动"
        fi
    fi
    if [ $old_running = yes ]; then service_stop "${old[@]}"; fi

    # Switch: keep the old deploy.conf for an automatic rollback, write the new
    # one, point `current` at the new release (atomically) and start it.
    if [ -f "$CONF" ]; then cp -f "$CONF" "$CONF.prev"; fi
    write_conf "${new[@]}" "$python" "$venv_from" "$keep"
    if [ "${new[0]}" = systemd ]; then install_unit "$release" "${new[1]}"; fi
    switch_link current "$name"
    service_start "${new[@]}"

    if ! wait_healthy "${new[@]}"; then
        roll_back_deploy "$name" "$old_release" "${new[@]}" # exits 1
    fi
    if [ -n "$old_release" ] && [ "$old_release" != "$name" ]; then
        switch_link previous "$old_release"
    fi
    prune "$keep"
    say "部署成功：releases/$name 正在运行（管理方式 ${new[0]}，端口 ${new[3]}）"
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
    read -ra back <<<"$(service_in_conf)"
    if [ "${back[0]}" = systemd ]; then install_unit "$RELEASES/$old_release" "${back[1]}"; fi
    warn "自动回滚到 releases/$old_release"
    service_start "${back[@]}"
    if wait_healthy "${back[@]}"; then
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
    read -ra svc <<<"$(service_in_conf)"
    local cur prev pid health rc=0
    cur=$(link_name current)
    prev=$(link_name previous)
    echo "部署目录:   $BASE"
    echo "当前版本:   releases/$cur"
    if [ -n "$prev" ]; then echo "上一版本:   releases/$prev"; else echo "上一版本:   （无）"; fi
    if [ "${svc[0]}" = systemd ]; then
        echo "管理方式:   systemd（单元 ${svc[1]}）"
    else
        echo "管理方式:   后台进程 + pid 文件（$PIDFILE）"
    fi
    echo "监听:       ${svc[2]}:${svc[3]}"
    echo "令牌文件:   $TOKEN_FILE"
    echo "数据目录:   $SHARED"
    if service_running "${svc[@]}"; then
        pid=$(service_pid "${svc[@]}")
        echo "进程:       运行中 (pid ${pid:-?})"
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
    read -ra svc <<<"$(service_in_conf)"
    local applog=$SHARED/async_api_${svc[3]}.log
    if [ "${svc[0]}" = systemd ]; then
        if [ "$OPT_FOLLOW" = 1 ]; then
            exec journalctl -u "${svc[1]}" -n "$OPT_LINES" -f --no-pager
        fi
        echo "==> journalctl -u ${svc[1]} <=="
        journalctl -u "${svc[1]}" -n "$OPT_LINES" --no-pager || true
        if [ -f "$applog" ]; then
            echo
            echo "==> $applog <=="
            tail -n "$OPT_LINES" "$applog"
        fi
        return 0
    fi
    local files=()
    [ -f "$applog" ] && files+=("$applog")
    [ -f "$OUTLOG" ] && files+=("$OUTLOG")
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
    read -ra svc <<<"$(service_in_conf)"
    if [ "${svc[0]}" = systemd ]; then
        say "重启 systemd 单元 ${svc[1]}"
        systemctl enable --quiet "${svc[1]}"
        systemctl restart "${svc[1]}"
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
    read -ra svc <<<"$(service_in_conf)"
    service_stop "${svc[@]}"
    say "服务已停止（数据保留在 $SHARED）"
}

# `current` and `previous` trade places, so a second rollback undoes the
# first. The release keeps its own venv, so nothing is installed.
cmd_rollback() {
    require_deployed
    take_lock
    local -a svc
    read -ra svc <<<"$(service_in_conf)"
    local cur prev
    cur=$(link_name current)
    prev=$(link_name previous)
    if [ -z "$prev" ] || [ ! -d "$RELEASES/$prev" ]; then
        die "没有可回滚的上一版本（previous 不存在）"
    fi
    [ -L "$RELEASES/$prev/.venv" ] || [ -d "$RELEASES/$prev/.venv" ] || die "上一版本 releases/$prev 缺少虚拟环境"
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

# Fixed for the whole run: everything lives under BASE.
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
    readonly BASE RELEASES SHARED CONF PIDFILE TOKEN_FILE ENV_FILE OUTLOG
}

absolute() {
    local p=$1
    case $p in /*) ;; *) p=$PWD/$p ;; esac
    while [ "${#p}" -gt 1 ] && [ "${p%/}" != "$p" ]; do p=${p%/}; done
    printf '%s\n' "$p"
}

# A deploy path ends up in a systemd unit and in shell commands on the server:
# absolute, and without characters that would need quoting there.
check_base_path() {
    [[ $1 =~ ^/[A-Za-z0-9._/@+-]*$ ]] || die "部署目录必须是绝对路径，且只含字母、数字和 ._/@+-: $1"
    [ "$1" != / ] || die "部署目录不能是 /"
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

# The service deploy.conf describes: MANAGER NAME BIND PORT.
service_in_conf() {
    local port bind name manager
    port=$(conf_get PORT)
    port=${port:-$DEFAULT_PORT}
    bind=$(conf_get BIND_HOST)
    name=$(conf_get SERVICE_NAME)
    manager=$(conf_get MANAGER)
    [ "$manager" = systemd ] || manager=pid
    printf '%s %s %s %s\n' "$manager" "${name:-prediction-service-$port}" "${bind:-$DEFAULT_BIND}" "$port"
}

# The service this deploy wants: MANAGER NAME BIND PORT. A new --port without
# --name renames the unit with it. The manager is detected anew each deploy.
service_wanted() {
    local port bind name manager
    port=$(wanted PORT "$OPT_PORT" "$DEFAULT_PORT")
    bind=$(wanted BIND_HOST "$OPT_HOST" "$DEFAULT_BIND")
    name=$(wanted SERVICE_NAME "$OPT_NAME" "prediction-service-$port")
    if [ -z "$OPT_NAME" ] && [ -n "$OPT_PORT" ]; then name=prediction-service-$port; fi
    case $OPT_MANAGER in
        systemd | pid) manager=$OPT_MANAGER ;;
        *) if systemd_available; then manager=systemd; else manager=pid; fi ;;
    esac
    printf '%s %s %s %s\n' "$manager" "$name" "$bind" "$port"
}

# write_conf MANAGER NAME BIND PORT PYTHON VENV_FROM KEEP
write_conf() {
    local tmp=$CONF.tmp.$$
    {
        echo "# Written by deploy-async.sh; the next deploy rewrites it (use its flags instead)."
        echo "PORT=$4"
        echo "BIND_HOST=$3"
        echo "SERVICE_NAME=$2"
        echo "MANAGER=$1"
        echo "PYTHON=$5"
        echo "VENV_FROM=$6"
        echo "KEEP=$7"
    } >"$tmp"
    mv -f "$tmp" "$CONF"
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
# First-deploy state: shared dirs, token, service.env
# ===========================================================================

ensure_shared() {
    mkdir -p "$RELEASES" "$SHARED/uploads" "$SHARED/results" "$SHARED/models" "$SHARED/plans" \
        "$SHARED/venvs"
}

# ensure_token PYTHON: generated once (openssl, else PYTHON's secrets), kept by every later deploy.
ensure_token() {
    if [ -s "$TOKEN_FILE" ]; then
        chmod 600 "$TOKEN_FILE"
        say "沿用已有的 API 令牌 ($TOKEN_FILE)"
        return 0
    fi
    local token tmp=$TOKEN_FILE.tmp.$$
    if command -v openssl >/dev/null 2>&1; then
        token=$(openssl rand -hex 32)
    else
        token=$("$1" -c 'import secrets; print(secrets.token_hex(32))')
    fi
    [[ $token =~ ^[0-9a-f]{64}$ ]] || die "生成 API 令牌失败"
    (
        umask 077
        printf '%s\n' "$token" >"$tmp"
    )
    chmod 600 "$tmp"
    mv -f "$tmp" "$TOKEN_FILE"
    say "已生成 API 令牌 ($TOKEN_FILE，权限 600)"
}

# ensure_env_file [KEY=VALUE...]: the commented template on first deploy, then each pair set.
ensure_env_file() {
    if [ ! -f "$ENV_FILE" ]; then
        cat >"$ENV_FILE" <<'EOF'
# 预测服务配置：每行 KEY=VALUE，值不加引号；修改后执行 ./deploy-async.sh restart 生效。
# PREDICT_DATA_DIR / PREDICT_PORT / PREDICT_HOST / PREDICT_API_TOKEN 由部署脚本管理，在此设置无效。
# 模型与培养方案：把真实文件放进 shared/models、shared/plans 即自动使用（为空时用代码自带的演示数据）。
# PREDICT_MAX_WORKERS=3
# PREDICT_MAX_PENDING=50
# PREDICT_TASK_TIMEOUT_S=1800
# PREDICT_RETENTION_HOURS=24
# PREDICT_MAX_UPLOAD_MB=50
# PREDICT_DATABASE_URL=postgresql://user:password@dbhost/dbname
EOF
        chmod 600 "$ENV_FILE"
    fi
    local kv key tmp
    for kv in "$@"; do
        key=${kv%%=*}
        tmp=$ENV_FILE.tmp.$$
        grep -v "^$key=" "$ENV_FILE" >"$tmp" || true
        printf '%s\n' "$kv" >>"$tmp"
        chmod 600 "$tmp"
        mv -f "$tmp" "$ENV_FILE"
        say "service.env: $key 已设置"
    done
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
# is never used (it is rebuilt).
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

# ===========================================================================
# The service process: systemd unit or pid file (args: MANAGER NAME BIND PORT)
# ===========================================================================

systemd_available() {
    [ -d /run/systemd/system ] && command -v systemctl >/dev/null 2>&1 && [ "$(id -u)" = 0 ]
}

# install_unit RELEASE_DIR NAME: the unit from the release's template. It runs
# BASE/current/deploy/run-service.sh, so a rollback needs no new unit.
install_unit() {
    local release_dir=$1 name=$2 unit tmp
    unit=/etc/systemd/system/$name.service
    tmp=$unit.tmp.$$
    sed -e "s|@BASE@|$BASE|g" -e "s|@NAME@|$name|g" -e "s|@USER@|$(id -un)|g" \
        "$release_dir/deploy/prediction-service.service.in" >"$tmp"
    mv -f "$tmp" "$unit"
    systemctl daemon-reload
    systemctl enable --quiet "$name"
}

service_start() {
    if [ "$1" = systemd ]; then
        say "启动 systemd 单元 $2"
        systemctl enable --quiet "$2"
        systemctl start "$2"
    else
        start_pid
    fi
}

service_stop() {
    if [ "$1" = systemd ]; then
        if systemctl is-active --quiet "$2" || systemctl is-failed --quiet "$2"; then
            say "停止 systemd 单元 $2"
            systemctl stop "$2" || true
        fi
        # Stopped means stopped, also after a reboot; deploy/restart enable it again.
        systemctl disable --quiet "$2" 2>/dev/null || true
    else
        stop_pid
    fi
}

service_running() {
    if [ "$1" = systemd ]; then
        systemctl is-active --quiet "$2"
    else
        is_ours "$(pid_from_file)"
    fi
}

service_pid() {
    local pid
    if [ "$1" = systemd ]; then
        pid=$(systemctl show -p MainPID --value "$2" 2>/dev/null || echo 0)
        [ "$pid" != 0 ] && echo "$pid"
    else
        pid=$(pid_from_file)
        if is_ours "$pid"; then echo "$pid"; fi
    fi
    return 0
}

show_log_tail() {
    local n=40
    if [ "$1" = systemd ]; then
        journalctl -u "$2" -n "$n" --no-pager 2>/dev/null || true
    elif [ -f "$OUTLOG" ]; then
        echo "---- $OUTLOG（最后 $n 行）----"
        tail -n "$n" "$OUTLOG" || true
    fi
}

# A pid is this service's only if it is gunicorn (or the runner that execs it)
# and belongs to this deploy path: its command line names the path, or -- when
# setproctitle rewrote the command line -- its working directory is one of our
# releases. A recycled pid or a zombie never matches.
is_ours() {
    local pid=$1 cmd cwd
    [[ $pid =~ ^[0-9]+$ ]] || return 1
    [ -r "/proc/$pid/cmdline" ] || return 1
    cmd=$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null) || return 1
    case $cmd in *gunicorn* | *run-service.sh*) ;; *) return 1 ;; esac
    case $cmd in *"$BASE/"*) return 0 ;; esac
    cwd=$(readlink "/proc/$pid/cwd" 2>/dev/null) || return 1
    case $cwd/ in "$RELEASES/"*) return 0 ;; esac
    return 1
}

pid_from_file() {
    local pid=
    if [ -f "$PIDFILE" ]; then read -r pid <"$PIDFILE" || true; fi
    printf '%s\n' "$pid"
}

start_pid() {
    local runner=$BASE/current/deploy/run-service.sh pid
    [ -f "$runner" ] || die "$runner 不存在"
    touch "$OUTLOG"
    # setsid: its own session, so closing the ssh session does not hang it up
    # and its process group holds exactly the service and its job children.
    # All descriptors redirected so ssh does not wait for them; fd 9 is the lock.
    if command -v setsid >/dev/null 2>&1; then
        setsid nohup bash "$runner" "$BASE" </dev/null >>"$OUTLOG" 2>&1 9>&- &
    else
        nohup bash "$runner" "$BASE" </dev/null >>"$OUTLOG" 2>&1 9>&- &
    fi
    pid=$!
    printf '%s\n' "$pid" >"$PIDFILE.tmp.$$"
    mv -f "$PIDFILE.tmp.$$" "$PIDFILE"
    say "已启动 (pid $pid，pid 文件 $PIDFILE)"
}

stop_pid() {
    local pid i
    pid=$(pid_from_file)
    if [ -z "$pid" ]; then
        say "服务未运行（没有 pid 文件）"
        return 0
    fi
    if ! is_ours "$pid"; then
        say "pid 文件中的进程 $pid 已不存在或不属于本服务，只删除 pid 文件"
        rm -f "$PIDFILE"
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
    rm -f "$PIDFILE"
}

# ===========================================================================
# Health (args: MANAGER NAME BIND PORT)
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

port_in_use() {
    local h
    h=$(health_host "$3")
    h=${h#[}
    h=${h%]}
    (exec 3<>"/dev/tcp/$h/$4") 2>/dev/null
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

# One probe through the project's own client: /health must say ok and
# /api/majors must accept the deploy's token (read from its file by the
# probe, never put on a command line). One line of output either way.
probe() {
    local release url
    url=http://$(health_host "$3"):$4
    if ! release=$(probe_release); then
        echo "没有可用于健康检查的版本（需要含 destination_predictor/client/probe.py 和 .venv 的版本）"
        return 1
    fi
    local -a token=()
    if [ -s "$TOKEN_FILE" ]; then token=(--token-file "$TOKEN_FILE"); fi
    (cd "$release" && exec .venv/bin/python -m destination_predictor.client.probe \
        --base-url "$url" ${token[@]+"${token[@]}"} --timeout 5)
}

# Probe every second until healthy (0), or until the process is gone or
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
OPT_NAME=
OPT_MANAGER=auto
OPT_PYTHON=
OPT_VENV_FROM=
OPT_KEEP=
OPT_HEALTH_TIMEOUT=120
OPT_LINES=100
OPT_FOLLOW=0
OPT_ENV=()

valid_port() { [[ $1 =~ ^[0-9]+$ ]] && [ "$1" -ge 1 ] && [ "$1" -le 65535 ]; }

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
            --name) OPT_NAME=$2 ;;
            --manager) OPT_MANAGER=$2 ;;
            --python) OPT_PYTHON=$2 ;;
            --venv-from) OPT_VENV_FROM=$2 ;;
            --keep) OPT_KEEP=$2 ;;
            --env) OPT_ENV+=("$2") ;;
            --health-timeout) OPT_HEALTH_TIMEOUT=$2 ;;
            --lines) OPT_LINES=$2 ;;
            *) die "未知选项: $1" ;;
        esac
        shift 2
    done

    [ -z "$OPT_PORT" ] || valid_port "$OPT_PORT" || die "--port 应为 1-65535 的整数: $OPT_PORT"
    [ -z "$OPT_HOST" ] || [[ $OPT_HOST =~ ^[A-Za-z0-9.:_-]+$ ]] || die "--host 不是有效的地址: $OPT_HOST"
    [ -z "$OPT_NAME" ] || [[ $OPT_NAME =~ ^[A-Za-z0-9_.@-]+$ ]] || die "--name 只能含字母、数字和 _.@-: $OPT_NAME"
    [ -z "$OPT_KEEP" ] || { [[ $OPT_KEEP =~ ^[0-9]+$ ]] && [ "$OPT_KEEP" -ge 2 ]; } ||
        die "--keep 应为 >= 2 的整数: $OPT_KEEP"
    [[ $OPT_HEALTH_TIMEOUT =~ ^[0-9]+$ ]] || die "--health-timeout 应为秒数: $OPT_HEALTH_TIMEOUT"
    [[ $OPT_LINES =~ ^[0-9]+$ ]] || die "--lines 应为整数: $OPT_LINES"
    case $OPT_MANAGER in auto | systemd | pid) ;; *) die "--manager 只能是 auto、systemd 或 pid" ;; esac
    local kv
    for kv in ${OPT_ENV[@]+"${OPT_ENV[@]}"}; do
        [[ $kv =~ ^[A-Za-z_][A-Za-z0-9_]*= ]] || die "--env 应为 KEY=VALUE: $kv"
        case ${kv%%=*} in
            PREDICT_DATA_DIR | PREDICT_PORT | PREDICT_HOST | PREDICT_API_TOKEN)
                die "${kv%%=*} 由部署脚本管理（用 --port/--host；令牌在 shared/api_token），不能用 --env 设置"
                ;;
        esac
    done
    readonly OPT_PORT OPT_HOST OPT_NAME OPT_MANAGER OPT_PYTHON OPT_VENV_FROM OPT_KEEP \
        OPT_HEALTH_TIMEOUT OPT_LINES OPT_FOLLOW OPT_ENV
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
        *) die "未知子命令: $sub（可用：activate status logs restart stop rollback port check）" ;;
    esac
}

main "$@"
