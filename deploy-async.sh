#!/usr/bin/env bash
# deploy-async.sh -- deploy and operate the prediction service on a server
# reached by SSH, or on this machine.
#
#   ./deploy-async.sh deploy   user@host [--path /opt/prediction-service] [--port 8080] [--ssh-port 22] [--identity FILE]
#                              [--env-file secrets.env]
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
#     api_token (600)  service.env (600)  deploy.conf  service.pid  gunicorn.log
#     models/ plans/   (optional: a real model / real plans, used instead of the demo ones)
#     venvs/<key>/     virtualenvs keyed by requirements.txt + interpreter, shared by releases
#   nginx/                      nginx.conf (from deploy/nginx.conf.in), nginx.pid, error.log
#
# What runs: nginx on --host:--port (clients' address, default 0.0.0.0:8080)
# in front of gunicorn on 127.0.0.1:--backend-port (default port + 10000), so
# slow clients meet nginx, never gunicorn's few threads; gunicorn runs as its
# own system user (--user, default prediction), never root, and never without
# the API token.
#
# Why this shape: uploads, results and task records live outside the
# releases, so no deploy or rollback can lose them; a failed release is never
# left running (health check, then automatic switch back).
#
# The pieces, in the order one deploy uses them:
#
#   deploy-async.sh        this file: reads the arguments, then runs the steps (see deploy()).
#   deploy/transfer.sh     copies the code to BASE/releases/.incoming-* (rsync or tar, here or over
#                          ssh): what git tracks (plus models/ and plans/), never local data.
#   deploy/host.sh         everything on the target: release dir, venv, service user, token, the
#                          `current` switch, nginx, systemd units or pid-file processes, health
#                          check, automatic rollback; and status / logs / restart / stop / rollback.
#   deploy/common.sh       the helpers all three share (sourced).
#   deploy/nginx.conf.in, deploy/prediction-nginx.service.in
#                          nginx's config and systemd unit, filled in by host.sh.
#   deploy/run-service.sh  inside each release: how systemd or the pid file runs gunicorn.
#   destination_predictor/client/probe.py
#                          the health check host.sh runs, through the project's ApiClient.
#
# The same host.sh runs locally and remotely: with --local it is just run;
# for user@host it is sent over ssh with each command -- with common.sh, the
# templates and, for --env-file, the secrets, as one tar on ssh's stdin -- and
# run on the server. Secrets never go on a command line (`ps` shows those to
# every user of both machines): --env refuses names like *PASSWORD*, *SECRET*,
# *TOKEN*, *DATABASE_URL*; they come from --env-file.
#
# Run `./deploy-async.sh help` for every option.
set -euo pipefail

DEFAULT_REMOTE_PATH=/opt/prediction-service

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)
HOST_SH=$SCRIPT_DIR/deploy/host.sh
TRANSFER_SH=$SCRIPT_DIR/deploy/transfer.sh
# What host.sh needs next to it on the target (sent with it over ssh).
HOST_FILES=(host.sh common.sh nginx.conf.in prediction-nginx.service.in)

if [ ! -f "$SCRIPT_DIR/deploy/common.sh" ]; then
    echo "错误: 缺少 $SCRIPT_DIR/deploy/common.sh（deploy-async.sh 要和项目的 deploy/ 目录一起使用）" >&2
    exit 1
fi
# shellcheck source=deploy/common.sh
. "$SCRIPT_DIR/deploy/common.sh"

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
  --port N             服务端口，客户端访问的端口，由 nginx 监听（默认 8080；之后的部署沿用上次的值）
  --host ADDR          nginx 的监听地址（默认 0.0.0.0，即所有网卡）
  --backend-port N     gunicorn 在 127.0.0.1 上的端口，只供 nginx 转发（默认 端口+10000，
                       超过 65535 时为 端口-10000）
  --ssh-port N         SSH 端口（默认 22）
  --identity FILE      SSH 私钥
  --known-hosts FILE   SSH known_hosts 文件（默认 ~/.ssh/known_hosts；首次连接自动接受主机密钥）
  --source DIR         要部署的代码目录（默认本脚本所在目录）
  --transfer MODE      auto | rsync | tar（默认 auto：两端都有 rsync 时用 rsync，否则 tar over ssh）
  --python PY          创建虚拟环境所用的 Python（目标机上的路径，默认 python3，需 >= 3.11）
  --venv-from DIR      以目标机上已有的虚拟环境 DIR 为基础（新环境通过 .pth 复用其 site-packages，
                       pip 只补装缺少的包；用于离线服务器和测试）
  --env KEY=VALUE      写入 shared/service.env 的服务配置（可重复，如 --env PREDICT_MAX_WORKERS=3）；
                       名称含 PASSWORD/SECRET/TOKEN/DATABASE_URL 的不接受（命令行对所有用户可见）
  --env-file FILE      从本机文件读取 KEY=VALUE 写入 shared/service.env（权限 600）：含密码的设置
                       （如 PREDICT_DATABASE_URL）只用这种方式；经 SSH 的标准输入传送，不出现在命令行上
  --user NAME          服务运行所用的系统用户（默认 prediction；以 root 部署时自动创建）
  --memory-max SIZE    systemd 单元的 MemoryMax（默认 80%，即物理内存的 80%；如 4G、infinity）
  --manager MODE       auto | systemd | pid（默认 auto：systemd 运行且为 root 时用 systemd）
  --name NAME          systemd 单元名（默认 prediction-service-<端口>；nginx 的单元为 NAME-nginx）
  --keep N             保留的版本数（默认 5；current 与 previous 总是保留）
  --health-timeout S   等待健康检查的秒数（默认 120）
  --lines N            logs 显示的行数（默认 100）
  --follow             logs 持续输出
EOF
}

# ---------------------------------------------------------------------------
# The command
# ---------------------------------------------------------------------------

main() {
    # Read the command line: SUB, TARGET (user@host or none), BASE, HOST_OPTS, SSH_OPTS.
    parse_args "$@"
    # host.sh owns BASE and its options: it vets them here, before anything is touched.
    bash "$HOST_SH" check "$BASE" ${HOST_OPTS[@]+"${HOST_OPTS[@]}"} ${ENV_FILE:+--env-file "$ENV_FILE"}
    if [ "$SUB" = deploy ]; then
        deploy
        return
    fi
    # Over SSH: the server takes our key, or we stop here with a clear message.
    [ -z "$TARGET" ] || check_ssh
    # status / logs / restart / stop / rollback happen on the target; its exit code is ours.
    on_target "$SUB" "$BASE" ${HOST_OPTS[@]+"${HOST_OPTS[@]}"}
}

# One deploy, top to bottom.
deploy() {
    local incoming
    incoming=.incoming-$(date -u +%Y%m%dT%H%M%SZ)-$$
    # 1. The code to deploy is a project checkout (and, for --local, not around BASE).
    check_source
    # 2. Over SSH: the server takes our key (BatchMode), or we stop before uploading.
    [ -z "$TARGET" ] || check_ssh
    # 3. Copy the code to BASE/releases/.incoming-* (deploy/transfer.sh: rsync, or tar).
    transfer "$incoming"
    # 4. On the target (deploy/host.sh activate): release dir, venv, token, switch `current`,
    #    start, health check. A failed check brings the old release back and ends the
    #    deploy here with a non-zero exit code.
    on_target activate "$BASE" "$incoming" ${HOST_OPTS[@]+"${HOST_OPTS[@]}"}
    # 5. Over SSH: where the service answers and how to verify it.
    [ -z "$TARGET" ] || print_remote_summary
}

# ---------------------------------------------------------------------------
# Arguments
# ---------------------------------------------------------------------------

SUB=
TARGET=
LOCAL_DIR=
OPT_PATH=
OPT_PORT=
SSH_PORT=22
IDENTITY=
KNOWN_HOSTS=
SOURCE_DIR=$SCRIPT_DIR
TRANSFER=auto
ENV_FILE=    # --env-file, absolute: read here, sent with host.sh to the target
BASE=        # the deploy path: absolute here for --local, as given (or the default) for a server
HOST_OPTS=() # options for deploy/host.sh, forwarded as given (it validates them)
SSH_OPTS=()

parse_args() {
    SUB=${1:-}
    [ $# -gt 0 ] && shift
    case $SUB in
        deploy | status | logs | restart | stop | rollback) ;;
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
                HOST_OPTS+=(--follow)
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
            --ssh-port) SSH_PORT=$2 ;;
            --identity) IDENTITY=$2 ;;
            --known-hosts) KNOWN_HOSTS=$2 ;;
            --source) SOURCE_DIR=$2 ;;
            --transfer) TRANSFER=$2 ;;
            --env-file) ENV_FILE=$(absolute "$2") ;;
            --env)
                # Refused before any process (the check, ssh) gets it as an argument.
                if secret_name "${2%%=*}"; then
                    die "${2%%=*} 含密码等机密，不能用 --env 传递（命令行参数对本机和服务器上的所有用户可见）；请写入文件（每行 KEY=VALUE，权限 600）并用 --env-file 文件"
                fi
                HOST_OPTS+=("$1" "$2")
                ;;
            --port)
                OPT_PORT=$2
                HOST_OPTS+=("$1" "$2")
                ;;
            --host | --backend-port | --python | --venv-from | --manager | --name | --user | \
                --memory-max | --keep | --health-timeout | --lines)
                HOST_OPTS+=("$1" "$2")
                ;;
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
        BASE=$(absolute "$LOCAL_DIR")
    elif [ -z "$TARGET" ]; then
        die "需要目标：user@host 或 --local DIR（见 ./deploy-async.sh help）"
    else
        BASE=${OPT_PATH:-$DEFAULT_REMOTE_PATH}
    fi
    valid_port "$SSH_PORT" || die "--ssh-port 应为 1-65535 的整数: $SSH_PORT"
    case $TRANSFER in auto | rsync | tar) ;; *) die "--transfer 只能是 auto、rsync 或 tar" ;; esac
    local f
    for f in "${HOST_FILES[@]}" transfer.sh; do
        [ -f "$SCRIPT_DIR/deploy/$f" ] ||
            die "缺少 $SCRIPT_DIR/deploy/$f（deploy-async.sh 要和项目的 deploy/ 目录一起使用）"
    done
    if [ -n "$ENV_FILE" ]; then
        [ "$SUB" = deploy ] || die "--env-file 只用于 deploy"
        if [ ! -f "$ENV_FILE" ] || [ ! -r "$ENV_FILE" ]; then die "--env-file 不可读: $ENV_FILE"; fi
    fi
    if [ -n "$TARGET" ]; then
        SSH_OPTS=(-o BatchMode=yes -o ConnectTimeout=15 -o ServerAliveInterval=15
            -o ServerAliveCountMax=4 -o StrictHostKeyChecking=accept-new -p "$SSH_PORT")
        if [ -n "$IDENTITY" ]; then
            [ -r "$IDENTITY" ] || die "私钥文件不可读: $IDENTITY"
            SSH_OPTS+=(-i "$IDENTITY" -o IdentitiesOnly=yes)
        fi
        [ -z "$KNOWN_HOSTS" ] || SSH_OPTS+=(-o "UserKnownHostsFile=$KNOWN_HOSTS")
    fi
}

# ---------------------------------------------------------------------------
# The steps
# ---------------------------------------------------------------------------

check_source() {
    [ -d "$SOURCE_DIR" ] || die "代码目录不存在: $SOURCE_DIR"
    SOURCE_DIR=$(cd "$SOURCE_DIR" && pwd -P)
    local f
    for f in async_api_server.py gunicorn.conf.py requirements.txt deploy/run-service.sh \
        deploy/prediction-service.service.in; do
        [ -f "$SOURCE_DIR/$f" ] || die "代码目录 $SOURCE_DIR 中缺少 $f"
    done
    if [ -z "$TARGET" ]; then
        case "$BASE/" in
            "$SOURCE_DIR/"*) die "部署目录 $BASE 不能位于代码目录 $SOURCE_DIR 之内" ;;
        esac
    fi
    return 0
}

check_ssh() {
    command -v ssh >/dev/null 2>&1 || die "本机没有 ssh 客户端（apt-get install -y openssh-client）"
    say "检查 SSH 连接 $TARGET (端口 $SSH_PORT)"
    local err
    if ! err=$(ssh "${SSH_OPTS[@]}" "$TARGET" true 2>&1 </dev/null); then
        die "无法通过 SSH 登录 $TARGET:$SSH_PORT（需要免密钥登录；检查 --identity、--ssh-port、安全组/防火墙）: $err"
    fi
}

transfer() {
    if [ -n "$TARGET" ]; then
        bash "$TRANSFER_SH" "$TRANSFER" "$SOURCE_DIR" "$BASE" "$1" "$TARGET" "${SSH_OPTS[@]}"
    else
        bash "$TRANSFER_SH" "$TRANSFER" "$SOURCE_DIR" "$BASE" "$1"
    fi
}

# Run deploy/host.sh with these arguments on the target: here, or on the
# server over ssh. There it travels -- with common.sh, the templates and the
# --env-file (as secrets.env) -- as one tar on ssh's stdin into a private
# temporary directory (mktemp -d: 0700), which is removed afterwards. So
# nothing it runs can read the rest of it from stdin, the server never needs
# -- or uses -- a copy of its own, and no secret is ever an argument.
on_target() {
    local env_file=''
    if [ "$1" = activate ]; then env_file=$ENV_FILE; fi
    if [ -z "$TARGET" ]; then
        bash "$HOST_SH" "$@" ${env_file:+--env-file "$env_file"}
        return
    fi
    local words='' a secrets=''
    for a in "$@"; do words+=$(printf '%q ' "$a"); done
    # $d is the server's temporary directory: expanded there, not here.
    # shellcheck disable=SC2016
    if [ -n "$env_file" ]; then secrets=' --env-file "$d/secrets.env"'; fi
    # shellcheck disable=SC2029  # $words is expanded here on purpose (quoted for the remote shell)
    host_bundle "$env_file" | ssh "${SSH_OPTS[@]}" "$TARGET" \
        "umask 077; d=\$(mktemp -d \"\${TMPDIR:-/tmp}/deploy-host.XXXXXX\") && tar --no-same-owner -C \"\$d\" -xf - && bash \"\$d/host.sh\" ${words% }$secrets; rc=\$?; rm -rf \"\$d\"; exit \$rc"
}

# The tar on_target sends: host.sh and what it needs, and the secrets. They
# are put together in a private directory here (0700, removed at once); the
# server unpacks them as its own user's (--no-same-owner), never as ours.
host_bundle() {
    local env_file=$1 stage f
    local -a files=("${HOST_FILES[@]}")
    stage=$(mktemp -d "${TMPDIR:-/tmp}/deploy-bundle.XXXXXX")
    for f in "${HOST_FILES[@]}"; do cp "$SCRIPT_DIR/deploy/$f" "$stage/$f"; done
    if [ -n "$env_file" ]; then
        if ! (umask 077 && cat -- "$env_file" >"$stage/secrets.env"); then
            rm -rf "$stage"
            die "无法读取 --env-file $env_file"
        fi
        files+=(secrets.env)
    fi
    if ! COPYFILE_DISABLE=1 tar -C "$stage" -cf - "${files[@]}"; then
        rm -rf "$stage"
        die "无法打包 deploy/host.sh"
    fi
    rm -rf "$stage"
}

print_remote_summary() {
    local port url
    port=${OPT_PORT:-$(on_target port "$BASE")}
    url=http://${TARGET#*@}:$port
    say "服务地址: $url（令牌在服务器的 $BASE/shared/api_token）"
    say "验证: python3 test-async-api.py --base-url $url --token <令牌>"
}

main "$@"
