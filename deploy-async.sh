#!/usr/bin/env bash
# deploy-async.sh -- deploy and operate the prediction service on a server
# reached by SSH, or on this machine.
#
#   ./deploy-async.sh deploy   user@host [--path /opt/prediction-service] [--port 8080] [--ssh-port 22] [--identity FILE]
#   ./deploy-async.sh deploy   --local DIR [--port 8080]
#   ./deploy-async.sh status   user@host | --local DIR
#   ./deploy-async.sh logs     user@host | --local DIR [--lines 100] [--follow]
#   ./deploy-async.sh restart  user@host | --local DIR
#   ./deploy-async.sh stop     user@host | --local DIR
#   ./deploy-async.sh rollback user@host | --local DIR
#
# Layout under the deploy path (BASE):
#
#   releases/<UTC timestamp>/   one directory per deploy: the code, .venv -> shared/venvs/<key>
#   current  -> releases/...    the release that runs (switched atomically)
#   previous -> releases/...    the release `rollback` goes back to
#   shared/                     PREDICT_DATA_DIR: never touched by a deploy or a rollback
#     uploads/ results/ tasks.sqlite3 async_api_<port>.log   (the service's data)
#     api_token (600)  service.env  deploy.conf  service.pid  gunicorn.log
#     models/ plans/   (optional: a real model / real plans, used instead of the demo ones)
#     venvs/<key>/     virtualenvs keyed by requirements.txt + interpreter, shared by releases
#
# Why this shape: uploads, results and task records live outside the
# releases, so no deploy or rollback can lose them; a failed release is never
# left running (health check, then automatic switch back); and the same code
# runs locally and remotely -- a remote command copies this script to the
# server and runs it there with --local BASE.
#
# Run `./deploy-async.sh help` for every option.
set -euo pipefail

DEFAULT_REMOTE_PATH=/opt/prediction-service
DEFAULT_PORT=8080
DEFAULT_BIND=0.0.0.0
DEFAULT_KEEP=5
STOP_TIMEOUT=45 # gunicorn's graceful_timeout (30 s) plus the job children's shutdown

SCRIPT_PATH=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)/$(basename "${BASH_SOURCE[0]}")
SCRIPT_DIR=$(dirname "$SCRIPT_PATH")

# Files and directories never uploaded: local state, caches and the service's data.
EXCLUDES=(.git .venv venv __pycache__ '*.pyc' .pytest_cache .ruff_cache .mypy_cache .hypothesis
    node_modules test-artifacts bench-out '*.log' 'tasks.sqlite3*' .staging
    'Cohort*_Predictions_*.xlsx')
TOP_EXCLUDES=(uploads results releases shared current previous)

usage() {
    cat <<'EOF'
用法 Usage:
  deploy-async.sh SUBCOMMAND (user@host | --local DIR) [options]

子命令 Subcommands:
  deploy     上传代码为新版本，建虚拟环境，启动服务并做健康检查；失败则自动回滚
  status     当前版本、进程、健康检查结果（退出码 0=正常，1=运行但不健康，3=未运行）
  logs       查看日志（--lines N，--follow 持续输出）
  restart    重启服务并等待健康检查
  stop       停止服务（只停止本服务自己的 systemd 单元或 pid 文件中的进程）
  rollback   切换到上一版本并重启（再次执行则回到原版本）

目标 Target:
  user@host            通过 SSH（免密钥，BatchMode）部署到远程服务器
  --local DIR          部署到本机目录 DIR（不用 SSH）

选项 Options:
  --path DIR           远程部署目录（默认 /opt/prediction-service）
  --port N             服务端口（默认 8080；之后的部署沿用上次的值）
  --host ADDR          监听地址（默认 0.0.0.0，即所有网卡）
  --ssh-port N         SSH 端口（默认 22）
  --identity FILE      SSH 私钥
  --known-hosts FILE   SSH known_hosts 文件（默认 ~/.ssh/known_hosts；首次连接自动接受主机密钥）
  --source DIR         要部署的代码目录（默认本脚本所在目录）
  --transfer MODE      auto | rsync | tar（默认 auto：两端都有 rsync 时用 rsync，否则 tar over ssh）
  --python PY          创建虚拟环境所用的 Python（目标机上的路径，默认 python3，需 >= 3.11）
  --venv-from DIR      以目标机上已有的虚拟环境 DIR 为基础（新环境通过 .pth 复用其 site-packages，
                       pip 只补装缺少的包；用于离线服务器和测试）
  --env KEY=VALUE      写入 shared/service.env 的服务配置（可重复，如 --env PREDICT_MAX_WORKERS=3）
  --manager MODE       auto | systemd | pid（默认 auto：systemd 运行且为 root 时用 systemd）
  --name NAME          systemd 单元名（默认 prediction-service-<端口>）
  --keep N             保留的版本数（默认 5；current 与 previous 总是保留）
  --health-timeout S   等待健康检查的秒数（默认 120）
  --lines N            logs 显示的行数（默认 100）
  --follow             logs 持续输出
EOF
}

say() { printf '==> %s\n' "$*"; }
warn() { printf '警告: %s\n' "$*" >&2; }
die() {
    printf '错误: %s\n' "$*" >&2
    exit 1
}

# ---------------------------------------------------------------------------
# Arguments
# ---------------------------------------------------------------------------

SUB=
TARGET=
LOCAL_DIR=
OPT_PATH=
OPT_PORT=
OPT_HOST=
SSH_PORT=22
IDENTITY=
KNOWN_HOSTS=
SOURCE_DIR=$SCRIPT_DIR
TRANSFER=auto
OPT_PYTHON=
OPT_VENV_FROM=
OPT_MANAGER=
OPT_NAME=
OPT_KEEP=
HEALTH_TIMEOUT=120
LINES=100
FOLLOW=0
INCOMING=
ENV_ARGS=()
FWD=() # options the host side needs, forwarded to the remote run

parse_args() {
    SUB=${1:-}
    [ $# -gt 0 ] && shift
    case $SUB in
        deploy | status | logs | restart | stop | rollback | activate) ;;
        help | -h | --help)
            usage
            exit 0
            ;;
        '')
            usage >&2
            exit 2
            ;;
        *) die "未知子命令: $SUB（可用：deploy status logs restart stop rollback）" ;;
    esac
    while [ $# -gt 0 ]; do
        case $1 in
            --follow | -f)
                FOLLOW=1
                FWD+=(--follow)
                shift
                continue
                ;;
            -h | --help)
                usage
                exit 0
                ;;
            --*)
                [ $# -ge 2 ] || die "$1 需要一个值"
                ;;
        esac
        case $1 in
            --local) LOCAL_DIR=$2 ;;
            --path) OPT_PATH=$2 ;;
            --port) OPT_PORT=$2; FWD+=("$1" "$2") ;;
            --host) OPT_HOST=$2; FWD+=("$1" "$2") ;;
            --ssh-port) SSH_PORT=$2 ;;
            --identity) IDENTITY=$2 ;;
            --known-hosts) KNOWN_HOSTS=$2 ;;
            --source) SOURCE_DIR=$2 ;;
            --transfer) TRANSFER=$2 ;;
            --python) OPT_PYTHON=$2; FWD+=("$1" "$2") ;;
            --venv-from) OPT_VENV_FROM=$2; FWD+=("$1" "$2") ;;
            --env) ENV_ARGS+=("$2"); FWD+=("$1" "$2") ;;
            --manager) OPT_MANAGER=$2; FWD+=("$1" "$2") ;;
            --name) OPT_NAME=$2; FWD+=("$1" "$2") ;;
            --keep) OPT_KEEP=$2; FWD+=("$1" "$2") ;;
            --health-timeout) HEALTH_TIMEOUT=$2; FWD+=("$1" "$2") ;;
            --lines) LINES=$2; FWD+=("$1" "$2") ;;
            --incoming) INCOMING=$2 ;;
            -*) die "未知选项: $1" ;;
            *)
                [ -z "$TARGET" ] || die "多余的参数: $1"
                TARGET=$1
                shift
                continue
                ;;
        esac
        shift 2
    done

    if [ -n "$LOCAL_DIR" ]; then
        [ -z "$TARGET" ] || die "不能同时指定 $TARGET 和 --local"
        [ -z "$OPT_PATH" ] || die "--local 已给出部署目录，不能再用 --path"
    elif [ -z "$TARGET" ]; then
        die "需要目标：user@host 或 --local DIR（见 ./deploy-async.sh help）"
    fi
    [ "$SUB" != activate ] || [ -n "$LOCAL_DIR" ] || die "activate 只在目标机上运行"

    [ -z "$OPT_PORT" ] || valid_port "$OPT_PORT" || die "--port 应为 1-65535 的整数: $OPT_PORT"
    valid_port "$SSH_PORT" || die "--ssh-port 应为 1-65535 的整数: $SSH_PORT"
    [ -z "$OPT_HOST" ] || [[ $OPT_HOST =~ ^[A-Za-z0-9.:_-]+$ ]] || die "--host 不是有效的地址: $OPT_HOST"
    [ -z "$OPT_NAME" ] || [[ $OPT_NAME =~ ^[A-Za-z0-9_.@-]+$ ]] || die "--name 只能含字母、数字和 _.@-: $OPT_NAME"
    [ -z "$OPT_KEEP" ] || { [[ $OPT_KEEP =~ ^[0-9]+$ ]] && [ "$OPT_KEEP" -ge 2 ]; } ||
        die "--keep 应为 >= 2 的整数: $OPT_KEEP"
    [[ $HEALTH_TIMEOUT =~ ^[0-9]+$ ]] || die "--health-timeout 应为秒数: $HEALTH_TIMEOUT"
    [[ $LINES =~ ^[0-9]+$ ]] || die "--lines 应为整数: $LINES"
    case $TRANSFER in auto | rsync | tar) ;; *) die "--transfer 只能是 auto、rsync 或 tar" ;; esac
    case ${OPT_MANAGER:-auto} in auto | systemd | pid) ;; *) die "--manager 只能是 auto、systemd 或 pid" ;; esac
    local kv
    for kv in ${ENV_ARGS[@]+"${ENV_ARGS[@]}"}; do
        [[ $kv =~ ^[A-Za-z_][A-Za-z0-9_]*= ]] || die "--env 应为 KEY=VALUE: $kv"
        case ${kv%%=*} in
            PREDICT_DATA_DIR | PREDICT_PORT | PREDICT_HOST | PREDICT_API_TOKEN)
                die "${kv%%=*} 由部署脚本管理（用 --port/--host；令牌在 shared/api_token），不能用 --env 设置"
                ;;
        esac
    done
}

valid_port() { [[ $1 =~ ^[0-9]+$ ]] && [ "$1" -ge 1 ] && [ "$1" -le 65535 ]; }

# A deploy path ends up in a systemd unit and in shell commands on the server:
# absolute, and without characters that would need quoting there.
check_base_path() {
    [[ $1 =~ ^/[A-Za-z0-9._/@+-]*$ ]] || die "部署目录必须是绝对路径，且只含字母、数字和 ._/@+-: $1"
    [ "$1" != / ] || die "部署目录不能是 /"
}

absolute() {
    local p=$1
    case $p in /*) ;; *) p=$PWD/$p ;; esac
    while [ "${#p}" -gt 1 ] && [ "${p%/}" != "$p" ]; do p=${p%/}; done
    printf '%s\n' "$p"
}

# ---------------------------------------------------------------------------
# Uploading a release (runs where the script is invoked)
# ---------------------------------------------------------------------------

check_source() {
    [ -d "$SOURCE_DIR" ] || die "代码目录不存在: $SOURCE_DIR"
    SOURCE_DIR=$(cd "$SOURCE_DIR" && pwd -P)
    local f
    for f in async_api_server.py gunicorn.conf.py requirements.txt deploy/run-service.sh \
        deploy/prediction-service.service.in; do
        [ -f "$SOURCE_DIR/$f" ] || die "代码目录 $SOURCE_DIR 中缺少 $f"
    done
}

# Sets EXCL to the exclude options of rsync (top-level names anchored with /)
# or tar (anchored with ./, as members are named ./...).
EXCL=()
set_excludes() {
    local top=$1 e
    EXCL=()
    for e in "${EXCLUDES[@]}"; do EXCL+=("--exclude=$e"); done
    for e in "${TOP_EXCLUDES[@]}"; do EXCL+=("--exclude=$top$e"); done
}

new_incoming_name() {
    printf '.incoming-%s-%s\n' "$(date -u +%Y%m%dT%H%M%SZ)" "$$"
}

local_deploy() {
    check_source
    local base
    base=$(absolute "$LOCAL_DIR")
    check_base_path "$base"
    case "$base/" in
        "$SOURCE_DIR/"*) die "部署目录 $base 不能位于代码目录 $SOURCE_DIR 之内" ;;
    esac
    mkdir -p "$base/releases"
    local incoming dest
    incoming=$(new_incoming_name)
    dest=$base/releases/$incoming
    if [ "$TRANSFER" != tar ] && command -v rsync >/dev/null 2>&1; then
        set_excludes /
        local -a link=()
        [ -d "$base/current/" ] && link=(--link-dest="$base/current/")
        say "复制代码 (rsync) $SOURCE_DIR -> $dest"
        rsync -a --delete "${EXCL[@]}" ${link[@]+"${link[@]}"} "$SOURCE_DIR/" "$dest/"
    else
        [ "$TRANSFER" != rsync ] || die "本机没有 rsync（可用 --transfer tar）"
        set_excludes ./
        say "复制代码 (tar) $SOURCE_DIR -> $dest"
        mkdir -p "$dest"
        tar -C "$SOURCE_DIR" -cf - "${EXCL[@]}" . | tar -C "$dest" -xf -
    fi
    LOCAL_DIR=$base
    INCOMING=$incoming
    host_activate
}

SSH_OPTS=()

setup_ssh() {
    SSH_OPTS=(-o BatchMode=yes -o ConnectTimeout=15 -o ServerAliveInterval=15
        -o ServerAliveCountMax=4 -o StrictHostKeyChecking=accept-new -p "$SSH_PORT")
    if [ -n "$IDENTITY" ]; then
        [ -r "$IDENTITY" ] || die "私钥文件不可读: $IDENTITY"
        SSH_OPTS+=(-i "$IDENTITY" -o IdentitiesOnly=yes)
    fi
    [ -z "$KNOWN_HOSTS" ] || SSH_OPTS+=(-o "UserKnownHostsFile=$KNOWN_HOSTS")
}

# Quote arguments for the remote shell.
remote_words() {
    local out='' a
    for a in "$@"; do out+=$(printf '%q ' "$a"); done
    printf '%s\n' "${out% }"
}

# The command is built (and quoted with remote_words) here, on purpose.
# shellcheck disable=SC2029
ssh_run() { ssh "${SSH_OPTS[@]}" "$TARGET" "$1"; }

check_ssh() {
    command -v ssh >/dev/null 2>&1 || die "本机没有 ssh 客户端（apt-get install -y openssh-client）"
    say "检查 SSH 连接 $TARGET (端口 $SSH_PORT)"
    local err
    if ! err=$(ssh "${SSH_OPTS[@]}" "$TARGET" true 2>&1 </dev/null); then
        die "无法通过 SSH 登录 $TARGET:$SSH_PORT（需要免密钥登录；检查 --identity、--ssh-port、安全组/防火墙）: $err"
    fi
}

# Run this script on the server with the given arguments. The script travels
# on ssh's stdin into a temporary file first, so nothing it runs can read the
# rest of the script from stdin, and the server never needs an old copy.
remote_self() {
    local words
    words=$(remote_words "$@")
    # shellcheck disable=SC2029  # $words is expanded here on purpose (quoted for the remote shell)
    ssh "${SSH_OPTS[@]}" "$TARGET" \
        "f=\$(mktemp \"\${TMPDIR:-/tmp}/deploy-async.XXXXXX\") && cat >\"\$f\" && bash \"\$f\" $words; rc=\$?; rm -f \"\$f\"; exit \$rc" \
        <"$SCRIPT_PATH"
}

# rsync's -e splits on spaces and honours single quotes, not backslashes.
rsync_rsh() {
    local out=ssh a
    for a in "${SSH_OPTS[@]}"; do
        case $a in *"'"*) die "SSH 参数中不能含单引号: $a" ;; esac
        out+=" '$a'"
    done
    printf '%s\n' "$out"
}

remote_deploy() {
    check_source
    local base=${OPT_PATH:-$DEFAULT_REMOTE_PATH}
    check_base_path "$base"
    setup_ssh
    check_ssh
    local qbase probe
    qbase=$(remote_words "$base")
    probe=$(ssh_run "mkdir -p $qbase/releases && { command -v rsync >/dev/null 2>&1 && echo rsync=yes || echo rsync=no; } && { [ -d $qbase/current/ ] && echo current=yes || echo current=no; }" </dev/null) ||
        die "无法在 $TARGET 上创建 $base/releases（权限不足？）"
    local incoming dest
    incoming=$(new_incoming_name)
    dest=$base/releases/$incoming
    local use_rsync=no
    if [ "$TRANSFER" != tar ] && command -v rsync >/dev/null 2>&1 && [[ $probe == *rsync=yes* ]]; then
        use_rsync=yes
    elif [ "$TRANSFER" = rsync ]; then
        die "rsync 不可用（本机或 $TARGET 上没有 rsync）；可用 --transfer tar"
    fi
    if [ $use_rsync = yes ]; then
        set_excludes /
        local -a link=()
        [[ $probe == *current=yes* ]] && link=(--link-dest="$base/current/")
        say "上传代码 (rsync over ssh) -> $TARGET:$dest"
        rsync -a --delete "${EXCL[@]}" ${link[@]+"${link[@]}"} -e "$(rsync_rsh)" \
            "$SOURCE_DIR/" "$TARGET:$dest/"
    else
        set_excludes ./
        say "上传代码 (tar over ssh) -> $TARGET:$dest"
        local qdest
        qdest=$(remote_words "$dest")
        tar -C "$SOURCE_DIR" -cf - "${EXCL[@]}" . |
            ssh_run "mkdir -p $qdest && tar -C $qdest -xf -"
    fi
    local rc=0
    remote_self activate --local "$base" --incoming "$incoming" ${FWD[@]+"${FWD[@]}"} || rc=$?
    if [ $rc -eq 0 ]; then
        local url
        url=http://${TARGET#*@}:$(remote_port "$base")
        say "服务地址: $url（令牌在服务器的 $base/shared/api_token）"
        say "验证: python3 test-async-api.py --base-url $url --token <令牌>"
    fi
    return $rc
}

remote_port() {
    if [ -n "$OPT_PORT" ]; then
        printf '%s\n' "$OPT_PORT"
    else
        ssh_run "sed -n 's/^PORT=//p' $(remote_words "$1/shared/deploy.conf")" </dev/null | tail -n 1
    fi
}

remote_command() {
    local base=${OPT_PATH:-$DEFAULT_REMOTE_PATH}
    check_base_path "$base"
    setup_ssh
    check_ssh
    remote_self "$SUB" --local "$base" ${FWD[@]+"${FWD[@]}"}
}

# ---------------------------------------------------------------------------
# Host side: everything below runs on the machine that serves (via --local)
# ---------------------------------------------------------------------------

BASE=
RELEASES=
SHARED=
CONF=
PIDFILE=
TOKEN_FILE=
ENV_FILE=
OUTLOG=
# deploy.conf values
PORT=
BIND_HOST=
SERVICE_NAME=
MANAGER=
PYTHON=
VENV_FROM=
KEEP=

host_init() {
    BASE=$(absolute "$LOCAL_DIR")
    if [ -d "$BASE" ]; then BASE=$(cd "$BASE" && pwd -P); fi
    check_base_path "$BASE"
    RELEASES=$BASE/releases
    SHARED=$BASE/shared
    CONF=$SHARED/deploy.conf
    PIDFILE=$SHARED/service.pid
    TOKEN_FILE=$SHARED/api_token
    ENV_FILE=$SHARED/service.env
    OUTLOG=$SHARED/gunicorn.log
}

# Only known keys, and no shell evaluation of the values.
load_conf() {
    PORT='' BIND_HOST='' SERVICE_NAME='' MANAGER='' PYTHON='' VENV_FROM='' KEEP=
    local line key val
    if [ -f "$CONF" ]; then
        while IFS= read -r line || [ -n "$line" ]; do
            key=${line%%=*}
            val=${line#*=}
            case $key in
                PORT | BIND_HOST | SERVICE_NAME | MANAGER | PYTHON | VENV_FROM | KEEP)
                    printf -v "$key" '%s' "$val"
                    ;;
            esac
        done <"$CONF"
    fi
}

# The flags win; then what the last deploy used; then the defaults.
resolve_conf() {
    PORT=${OPT_PORT:-${PORT:-$DEFAULT_PORT}}
    BIND_HOST=${OPT_HOST:-${BIND_HOST:-$DEFAULT_BIND}}
    SERVICE_NAME=${OPT_NAME:-${SERVICE_NAME:-prediction-service-$PORT}}
    [ -z "$OPT_NAME" ] && [ -n "$OPT_PORT" ] && SERVICE_NAME=prediction-service-$PORT
    PYTHON=${OPT_PYTHON:-${PYTHON:-python3}}
    VENV_FROM=${OPT_VENV_FROM:-$VENV_FROM}
    KEEP=${OPT_KEEP:-${KEEP:-$DEFAULT_KEEP}}
    MANAGER=$(detect_manager "${OPT_MANAGER:-auto}")
}

write_conf() {
    local tmp=$CONF.tmp.$$
    {
        echo "# Written by deploy-async.sh; the next deploy rewrites it (use its flags instead)."
        echo "PORT=$PORT"
        echo "BIND_HOST=$BIND_HOST"
        echo "SERVICE_NAME=$SERVICE_NAME"
        echo "MANAGER=$MANAGER"
        echo "PYTHON=$PYTHON"
        echo "VENV_FROM=$VENV_FROM"
        echo "KEEP=$KEEP"
    } >"$tmp"
    mv -f "$tmp" "$CONF"
}

systemd_available() {
    [ -d /run/systemd/system ] && command -v systemctl >/dev/null 2>&1 && [ "$(id -u)" = 0 ]
}

detect_manager() {
    case $1 in
        systemd)
            systemd_available || die "--manager systemd：本机 systemd 未运行或当前用户不是 root"
            echo systemd
            ;;
        pid) echo pid ;;
        *) if systemd_available; then echo systemd; else echo pid; fi ;;
    esac
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

health_host() {
    case $BIND_HOST in
        0.0.0.0 | '') echo 127.0.0.1 ;;
        :: | '[::]') echo '[::1]' ;;
        *:*) echo "[$BIND_HOST]" ;;
        *) echo "$BIND_HOST" ;;
    esac
}

port_in_use() {
    local h
    h=$(health_host)
    h=${h#[}
    h=${h%]}
    (exec 3<>"/dev/tcp/$h/$PORT") 2>/dev/null
}

# --- the service process -----------------------------------------------------

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

service_pid() {
    if [ "$MANAGER" = systemd ]; then
        local pid
        pid=$(systemctl show -p MainPID --value "$SERVICE_NAME" 2>/dev/null || echo 0)
        [ "$pid" != 0 ] && echo "$pid"
    else
        local pid
        pid=$(pid_from_file)
        if is_ours "$pid"; then echo "$pid"; fi
    fi
    return 0
}

service_running() {
    if [ "$MANAGER" = systemd ]; then
        systemctl is-active --quiet "$SERVICE_NAME"
    else
        is_ours "$(pid_from_file)"
    fi
}

install_unit() {
    local release_dir=$1 unit=/etc/systemd/system/$SERVICE_NAME.service tmp
    tmp=$unit.tmp.$$
    sed -e "s|@BASE@|$BASE|g" -e "s|@NAME@|$SERVICE_NAME|g" -e "s|@USER@|$(id -un)|g" \
        "$release_dir/deploy/prediction-service.service.in" >"$tmp"
    mv -f "$tmp" "$unit"
    systemctl daemon-reload
    systemctl enable --quiet "$SERVICE_NAME"
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

service_start() {
    if [ "$MANAGER" = systemd ]; then
        say "启动 systemd 单元 $SERVICE_NAME"
        systemctl enable --quiet "$SERVICE_NAME"
        systemctl start "$SERVICE_NAME"
    else
        start_pid
    fi
}

service_stop() {
    if [ "$MANAGER" = systemd ]; then
        if systemctl is-active --quiet "$SERVICE_NAME" || systemctl is-failed --quiet "$SERVICE_NAME"; then
            say "停止 systemd 单元 $SERVICE_NAME"
            systemctl stop "$SERVICE_NAME" || true
        fi
        # Stopped means stopped, also after a reboot; deploy/restart enable it again.
        systemctl disable --quiet "$SERVICE_NAME" 2>/dev/null || true
    else
        stop_pid
    fi
}

# --- health ----------------------------------------------------------------------

# /health (open) and /api/majors (with the token); the token is read from its
# file inside Python, never put on a command line.
PROBE_PY='
import json, os, sys, urllib.error, urllib.request
base = os.environ["PROBE_URL"]
token = ""
path = os.environ.get("PROBE_TOKEN_FILE", "")
if path and os.path.isfile(path):
    with open(path, encoding="utf-8") as fh:
        token = fh.read().strip()
def get(route, auth):
    req = urllib.request.Request(base + route)
    if auth and token:
        req.add_header("Authorization", "Bearer " + token)
    try:
        with urllib.request.urlopen(req, timeout=5) as resp:
            return resp.status, json.loads(resp.read().decode("utf-8"))
    except urllib.error.HTTPError as exc:
        try:
            return exc.code, json.loads(exc.read().decode("utf-8"))
        except ValueError:
            return exc.code, None
try:
    status, health = get("/health", False)
    if status != 200 or not isinstance(health, dict) or health.get("success") is not True:
        err = health.get("error") if isinstance(health, dict) else ""
        print("GET /health -> HTTP %s %s" % (status, err or ""))
        sys.exit(1)
    status, majors = get("/api/majors", True)
    if status != 200 or not isinstance(majors, dict) or majors.get("success") is not True:
        err = majors.get("error") if isinstance(majors, dict) else ""
        print("GET /api/majors -> HTTP %s %s" % (status, err or ""))
        sys.exit(1)
    data = health.get("data") or {}
    years = (majors.get("data") or {}).get("years")
    print("status=%s model=%s running=%s pending=%s years=%s" % (
        data.get("status"), data.get("model_version"), data.get("running"),
        data.get("pending"), years))
except Exception as exc:
    print("%s: %s" % (type(exc).__name__, exc))
    sys.exit(1)
'

probe() {
    local py=$BASE/current/.venv/bin/python
    [ -x "$py" ] || py=$(command -v python3 || true)
    [ -n "$py" ] || {
        echo "没有可用的 python 来做健康检查"
        return 1
    }
    PROBE_URL="http://$(health_host):$PORT" PROBE_TOKEN_FILE=$TOKEN_FILE "$py" -c "$PROBE_PY"
}

wait_healthy() {
    local deadline=$((SECONDS + HEALTH_TIMEOUT)) out=''
    say "等待健康检查 http://$(health_host):$PORT/health 与 /api/majors（最多 ${HEALTH_TIMEOUT}s）"
    sleep 1
    while :; do
        if out=$(probe 2>&1); then
            say "健康检查通过: $out"
            return 0
        fi
        if ! service_running; then
            warn "服务进程已退出，健康检查失败: $out"
            return 1
        fi
        if [ $SECONDS -ge $deadline ]; then
            warn "健康检查 ${HEALTH_TIMEOUT}s 内未通过: $out"
            return 1
        fi
        sleep 1
    done
}

show_log_tail() {
    local n=${1:-30}
    if [ "$MANAGER" = systemd ]; then
        journalctl -u "$SERVICE_NAME" -n "$n" --no-pager 2>/dev/null || true
    elif [ -f "$OUTLOG" ]; then
        echo "---- $OUTLOG（最后 $n 行）----"
        tail -n "$n" "$OUTLOG" || true
    fi
}

# --- first-deploy state ----------------------------------------------------------

ensure_shared() {
    mkdir -p "$RELEASES" "$SHARED/uploads" "$SHARED/results" "$SHARED/models" "$SHARED/plans" \
        "$SHARED/venvs"
}

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
        token=$("$PYTHON" -c 'import secrets; print(secrets.token_hex(32))')
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
    for kv in ${ENV_ARGS[@]+"${ENV_ARGS[@]}"}; do
        key=${kv%%=*}
        tmp=$ENV_FILE.tmp.$$
        grep -v "^$key=" "$ENV_FILE" >"$tmp" || true
        printf '%s\n' "$kv" >>"$tmp"
        chmod 600 "$tmp"
        mv -f "$tmp" "$ENV_FILE"
        say "service.env: $key 已设置"
    done
}

# --- virtualenvs -------------------------------------------------------------------

# Keyed by requirements.txt, the interpreter and the seed environment: a deploy
# that changes none of them reuses the venv (seconds, not minutes), one that
# changes requirements gets a fresh one while the old release keeps its own
# for rollback. Built in place and marked complete last, so a half-built venv
# is never used (it is rebuilt).
#
# Called as `ensure_venv DIR || ...`, where errexit does not apply, so every
# step checks its own result and the function returns 1 (never exits), letting
# the caller mark the release failed.
ensure_venv() {
    local release_dir=$1 base_py key vdir req=$1/requirements.txt
    if [ -n "$VENV_FROM" ]; then
        base_py=$VENV_FROM/bin/python
        if [ ! -x "$base_py" ]; then
            warn "--venv-from $VENV_FROM 不是虚拟环境（没有 bin/python）"
            return 1
        fi
    else
        base_py=$(command -v "$PYTHON" || true)
        if [ -z "$base_py" ]; then
            warn "目标机上没有 $PYTHON（需要 Python >= 3.11；可用 --python 指定）"
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
        printf '%s\n' "$VENV_FROM"
    } | "$base_py" -c 'import hashlib, sys; print(hashlib.sha256(sys.stdin.buffer.read()).hexdigest()[:16])') ||
        return 1
    vdir=$SHARED/venvs/$key
    if [ -f "$vdir/.complete" ] && "$vdir/bin/python" -c 'import flask, gunicorn' 2>/dev/null; then
        say "复用虚拟环境 shared/venvs/$key（requirements.txt 与 Python 未变）"
    else
        rm -rf -- "$vdir"
        if [ -n "$VENV_FROM" ]; then
            say "创建虚拟环境 shared/venvs/$key（复用 $VENV_FROM 的包）"
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

# --- pruning ---------------------------------------------------------------------

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

prune() {
    local cur prev n count=0
    cur=$(link_name current)
    prev=$(link_name previous)
    while IFS= read -r n; do
        [ -n "$n" ] || continue
        count=$((count + 1))
        if [ "$n" = "$cur" ] || [ "$n" = "$prev" ] || [ $count -le "$KEEP" ]; then
            continue
        fi
        say "删除旧版本 releases/$n"
        rm -rf -- "${RELEASES:?}/$n"
    done < <(release_names)
    find "$RELEASES" -mindepth 1 -maxdepth 1 -name '.incoming-*' -mmin +60 -exec rm -rf {} + 2>/dev/null || true
    # venvs no remaining release points to
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

# --- subcommands -------------------------------------------------------------------

host_activate() {
    host_init
    [[ $INCOMING =~ ^\.incoming-[A-Za-z0-9T-]+$ ]] || die "无效的 --incoming: $INCOMING"
    [ -d "$RELEASES/$INCOMING" ] || die "上传的代码不存在: $RELEASES/$INCOMING"
    ensure_shared
    take_lock
    load_conf
    local old_manager=$MANAGER old_name=$SERVICE_NAME old_port=$PORT old_bind=$BIND_HOST
    local had_conf=no
    [ -f "$CONF" ] && had_conf=yes
    resolve_conf

    local name stamp n=1
    stamp=$(date -u +%Y%m%dT%H%M%SZ)
    name=$stamp
    while [ -e "$RELEASES/$name" ] || [ -e "$RELEASES/$name-failed" ]; do
        n=$((n + 1))
        name=$stamp-$n
    done
    mv "$RELEASES/$INCOMING" "$RELEASES/$name"
    local release_dir=$RELEASES/$name
    chmod +x "$release_dir/deploy/run-service.sh"
    say "新版本 releases/$name"

    ensure_token
    ensure_env_file
    if ! ensure_venv "$release_dir"; then
        mv "$release_dir" "$release_dir-failed"
        die "安装依赖失败；服务未改动（仍运行旧版本）"
    fi

    local old
    old=$(link_name current)
    [ -n "$old" ] && [ ! -d "$RELEASES/$old" ] && old=''

    # Stop what runs now (with the settings it was started with), but refuse
    # first if the new port is held by some other program.
    local new_manager=$MANAGER new_name=$SERVICE_NAME new_port=$PORT new_bind=$BIND_HOST
    local old_running=no
    if [ $had_conf = yes ]; then
        MANAGER=$old_manager SERVICE_NAME=$old_name PORT=$old_port BIND_HOST=$old_bind
        service_running && old_running=yes
    fi
    if [ $old_running = no ] || [ "$old_port" != "$new_port" ]; then
        PORT=$new_port BIND_HOST=$new_bind
        if port_in_use; then
            mv "$release_dir" "$release_dir-failed"
            die "端口 $new_port 已被其他程序占用；服务未改动"
        fi
    fi
    if [ $old_running = yes ]; then
        MANAGER=$old_manager SERVICE_NAME=$old_name PORT=$old_port BIND_HOST=$old_bind
        service_stop
    fi
    [ -f "$CONF" ] && cp -f "$CONF" "$CONF.prev"

    MANAGER=$new_manager SERVICE_NAME=$new_name PORT=$new_port BIND_HOST=$new_bind
    write_conf
    [ "$MANAGER" = systemd ] && install_unit "$release_dir"
    switch_link current "$name"
    service_start
    if wait_healthy; then
        if [ -n "$old" ] && [ "$old" != "$name" ]; then switch_link previous "$old"; fi
        prune
        say "部署成功：releases/$name 正在运行（管理方式 $MANAGER，端口 $PORT）"
        say "API 令牌文件: $TOKEN_FILE（权限 600；查看：cat $TOKEN_FILE）"
        say "数据目录 PREDICT_DATA_DIR: $SHARED（uploads/ results/ tasks.sqlite3 async_api_$PORT.log）"
        return 0
    fi

    warn "新版本 releases/$name 未通过健康检查"
    show_log_tail 40
    service_stop
    if [ -n "$old" ]; then
        switch_link current "$old"
        mv "$release_dir" "$release_dir-failed"
        if [ -f "$CONF.prev" ]; then
            mv -f "$CONF.prev" "$CONF"
            load_conf
            KEEP=${KEEP:-$DEFAULT_KEEP}
        fi
        [ "$MANAGER" = systemd ] && install_unit "$RELEASES/$old"
        warn "自动回滚到 releases/$old"
        service_start
        if wait_healthy; then
            warn "已回滚：releases/$old 正在运行；失败的版本保留在 releases/$name-failed 供排查"
        else
            warn "回滚后的 releases/$old 也未通过健康检查；请查看 ./deploy-async.sh logs"
        fi
    else
        rm -f "$BASE/current"
        mv "$release_dir" "$release_dir-failed"
        warn "这是第一次部署，没有可回滚的版本；失败的版本在 releases/$name-failed"
    fi
    prune
    exit 1
}

host_status() {
    host_init
    if [ ! -f "$CONF" ] || [ ! -L "$BASE/current" ]; then
        echo "部署目录: $BASE —— 尚未部署"
        exit 3
    fi
    load_conf
    local cur prev pid health rc=0
    cur=$(link_name current)
    prev=$(link_name previous)
    echo "部署目录:   $BASE"
    echo "当前版本:   releases/$cur"
    if [ -n "$prev" ]; then echo "上一版本:   releases/$prev"; else echo "上一版本:   （无）"; fi
    if [ "$MANAGER" = systemd ]; then
        echo "管理方式:   systemd（单元 $SERVICE_NAME）"
    else
        echo "管理方式:   后台进程 + pid 文件（$PIDFILE）"
    fi
    echo "监听:       $BIND_HOST:$PORT"
    echo "令牌文件:   $TOKEN_FILE"
    echo "数据目录:   $SHARED"
    if service_running; then
        pid=$(service_pid)
        echo "进程:       运行中 (pid ${pid:-?})"
        if health=$(probe 2>&1); then
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

host_logs() {
    host_init
    require_deployed
    load_conf
    local applog=$SHARED/async_api_$PORT.log
    if [ "$MANAGER" = systemd ]; then
        if [ $FOLLOW = 1 ]; then
            exec journalctl -u "$SERVICE_NAME" -n "$LINES" -f --no-pager
        fi
        echo "==> journalctl -u $SERVICE_NAME <=="
        journalctl -u "$SERVICE_NAME" -n "$LINES" --no-pager || true
        if [ -f "$applog" ]; then
            echo
            echo "==> $applog <=="
            tail -n "$LINES" "$applog"
        fi
        return 0
    fi
    local files=()
    [ -f "$applog" ] && files+=("$applog")
    [ -f "$OUTLOG" ] && files+=("$OUTLOG")
    [ ${#files[@]} -gt 0 ] || die "还没有日志文件（$applog、$OUTLOG）"
    if [ $FOLLOW = 1 ]; then
        exec tail -v -n "$LINES" -F "${files[@]}"
    fi
    tail -v -n "$LINES" "${files[@]}"
}

host_restart() {
    host_init
    require_deployed
    take_lock
    load_conf
    KEEP=${KEEP:-$DEFAULT_KEEP}
    if [ "$MANAGER" = systemd ]; then
        say "重启 systemd 单元 $SERVICE_NAME"
        systemctl enable --quiet "$SERVICE_NAME"
        systemctl restart "$SERVICE_NAME"
    else
        service_stop
        service_start
    fi
    wait_healthy || {
        show_log_tail 40
        die "重启后健康检查未通过"
    }
}

host_stop() {
    host_init
    require_deployed
    take_lock
    load_conf
    service_stop
    say "服务已停止（数据保留在 $SHARED）"
}

host_rollback() {
    host_init
    require_deployed
    take_lock
    load_conf
    local cur prev
    cur=$(link_name current)
    prev=$(link_name previous)
    if [ -z "$prev" ] || [ ! -d "$RELEASES/$prev" ]; then
        die "没有可回滚的上一版本（previous 不存在）"
    fi
    [ -L "$RELEASES/$prev/.venv" ] || [ -d "$RELEASES/$prev/.venv" ] || die "上一版本 releases/$prev 缺少虚拟环境"
    say "回滚: releases/$cur -> releases/$prev"
    service_stop
    switch_link current "$prev"
    switch_link previous "$cur"
    service_start
    if wait_healthy; then
        say "回滚完成：releases/$prev 正在运行（再次 rollback 可回到 releases/$cur）"
        return 0
    fi
    warn "releases/$prev 未通过健康检查，恢复 releases/$cur"
    show_log_tail 40
    service_stop
    switch_link current "$cur"
    switch_link previous "$prev"
    service_start
    wait_healthy || warn "releases/$cur 也未通过健康检查；请查看 logs"
    exit 1
}

main() {
    parse_args "$@"
    if [ -n "$LOCAL_DIR" ]; then
        case $SUB in
            deploy) local_deploy ;;
            activate) host_activate ;;
            status) host_status ;;
            logs) host_logs ;;
            restart) host_restart ;;
            stop) host_stop ;;
            rollback) host_rollback ;;
        esac
    else
        case $SUB in
            deploy) remote_deploy ;;
            *) remote_command ;;
        esac
    fi
}

main "$@"
