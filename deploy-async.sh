#!/usr/bin/env bash
# deploy-async.sh -- deploy and operate the prediction service on a server
# reached by SSH, or on this machine.
#
#   ./deploy-async.sh deploy   user@host[:/path] [--path /opt/prediction-service] [--port 8080] [--ssh-port 22]
#                              [--identity FILE] [--env-file secrets.env] [--role api|worker|all]
#   ./deploy-async.sh deploy   user@h1 user@h2 --role worker --env-file cluster.env   several hosts
#   ./deploy-async.sh deploy   --hosts-file cluster.hosts --env-file cluster.env       a whole cluster
#   ./deploy-async.sh deploy   --local DIR [--port 8080]
#   ./deploy-async.sh status   TARGETS [--role R]     TARGETS: user@host[:/path]..., --hosts-file FILE,
#   ./deploy-async.sh logs     TARGETS [--lines 100] [--follow]                   or --local DIR
#   ./deploy-async.sh restart  TARGETS [--role R]
#   ./deploy-async.sh stop     TARGETS [--role R]
#   ./deploy-async.sh rollback TARGETS
#
# Roles (--role; recorded in each host's deploy.conf, so the other
# subcommands know what runs there): `all` (the default: nginx + gunicorn, as
# before roles existed, plus the workers when service.env sets
# PREDICT_QUEUE_URL), `api` (nginx + gunicorn), `worker` (the distributed
# mode's `python -m destination_predictor.worker`, no nginx, no port). With
# several hosts, deploy checks every one first (SSH, and that it can run its
# role: a worker needs PREDICT_QUEUE_URL and PREDICT_TASKS_DB_URL), then
# deploys them one at a time and stops at the first that fails; every
# subcommand ends with a summary line per host.
#
# Layout under the deploy path (BASE):
#
#   releases/<UTC timestamp>/   one directory per deploy: the code, .venv -> shared/venvs/<key>
#   current  -> releases/...    the release that runs (switched atomically)
#   previous -> releases/...    the release `rollback` goes back to
#   shared/                     PREDICT_DATA_DIR (unless service.env names a directory all
#                               machines share): never touched by a deploy or a rollback
#     uploads/ results/ tasks.sqlite3 async_api_<port>.log   (the service's data)
#     api_token (600)  service.env (600)  deploy.conf  service.pid  gunicorn.log
#     worker.pid  worker.log                                  (a machine that runs the workers)
#     models/ plans/   (optional: a real model / real plans, used instead of the demo ones)
#     venvs/<key>/     virtualenvs keyed by requirements.txt + interpreter, shared by releases
#   nginx/                      nginx.conf (from deploy/nginx.conf.in), nginx.pid, error.log
#
# What runs (the API): nginx on --host:--port (clients' address, default
# 0.0.0.0:8080) in front of gunicorn on 127.0.0.1:--backend-port (default
# port + 10000), so slow clients meet nginx, never gunicorn's few threads;
# gunicorn runs as its own system user (--user, default prediction), never
# root, and never without the API token. The workers run as the same user.
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
#   deploy/run-service.sh  inside each release: how systemd or the pid file runs gunicorn or
#                          the workers (units from deploy/prediction-{service,worker}.service.in).
#   destination_predictor/client/probe.py, destination_predictor/worker/probe.py
#                          the health checks host.sh runs: the API through the project's ApiClient,
#                          a worker machine's workers in Redis.
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
  deploy-async.sh SUBCOMMAND 目标... [options]

子命令 Subcommands:
  deploy     上传代码为新版本，建虚拟环境，启动服务并做健康检查；失败则自动回滚
  status     当前版本、角色、进程、健康检查结果（退出码 0=正常，1=运行但不健康，3=未运行；
             多台时为第一台不正常主机的退出码）
  logs       查看日志（--lines N，--follow 持续输出，只用于一台）
  restart    重启服务并等待健康检查
  stop       停止服务（只停止本服务自己的 systemd 单元或 pid 文件中的进程）
  rollback   切换到上一版本并重启（再次执行则回到原版本）

目标 Target（可以给多台）:
  user@host[:/部署目录]  通过 SSH（免密钥，BatchMode）；冒号后的路径只用于这一台，其余用 --path
  --hosts-file FILE      主机清单：每行 `user@host[:/部署目录] [api|worker|all]`，# 开头为注释
  --local DIR            部署到本机目录 DIR（不用 SSH；只能一个）
  多台时：deploy 先检查每一台（SSH、角色所需的配置），再逐台部署，遇到第一台失败就停止；
  restart、rollback 也在第一台失败处停止；status、logs、stop 对每一台都执行。最后逐台列出结果。

角色 Role:
  --role ROLE          api | worker | all（默认 all：与以前相同，nginx + gunicorn；service.env 设置了
                       PREDICT_QUEUE_URL 时还运行执行进程）。api：只有 nginx + gunicorn；worker：只有
                       执行进程 python -m destination_predictor.worker（需要 PREDICT_QUEUE_URL 与
                       PREDICT_TASKS_DB_URL），没有 nginx，不占端口。deploy 把角色记入 deploy.conf，之后
                       沿用；其他子命令用 --role 只处理该角色的部分，没有该角色的主机跳过。
                       主机清单中写了角色的行按清单部署；同时给了 --role 时只处理角色相同的行。

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
                       （如 PREDICT_DATABASE_URL、PREDICT_TASKS_DB_URL）只用这种方式；经 SSH 的标准输入
                       传送，不出现在命令行上。多台时每台写入同一份
  --user NAME          服务运行所用的系统用户（默认 prediction；以 root 部署时自动创建）
  --memory-max SIZE    systemd 单元的 MemoryMax（默认 80%，即物理内存的 80%；如 4G、infinity）
  --manager MODE       auto | systemd | pid（默认 auto：systemd 运行且为 root 时用 systemd）
  --name NAME          systemd 单元名（默认 prediction-service-<端口>；nginx 的单元为 NAME-nginx，
                       执行进程的单元为 NAME-worker）
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
    # Read the command line: SUB, the targets (T_*), HOST_OPTS, SSH_OPTS.
    parse_args "$@"
    # host.sh owns BASE and its options: it vets them here, before anything is touched.
    local i
    for i in "${!T_BASE[@]}"; do
        bash "$HOST_SH" check "${T_BASE[i]}" ${HOST_OPTS[@]+"${HOST_OPTS[@]}"} \
            ${T_ROLE[i]:+--role "${T_ROLE[i]}"} ${ENV_FILE:+--env-file "$ENV_FILE"}
    done
    if [ "$SUB" = deploy ]; then
        deploy_all
    else
        operate_all
    fi
}

# Deploy every target: first check them all (SSH, and whether each can run
# its role: preflight), so a missing setting or an unreachable host stops the
# command before any host has changed; then one host at a time, stopping at
# the first failure.
deploy_all() {
    local n=${#T_BASE[@]} i
    # The code to deploy is a project checkout (and, for --local, not around BASE).
    check_source
    if [ "$n" -eq 1 ]; then
        select_target 0
        [ -z "$TARGET" ] || check_ssh
        preflight
        deploy_one # its exit code is ours
        return
    fi
    for i in "${!T_BASE[@]}"; do
        select_target "$i"
        say "检查 $(target_label)"
        if ! ({ [ -z "$TARGET" ] || check_ssh; } && preflight); then
            die "$(target_label) 未通过部署前检查（见上）；没有改动任何主机"
        fi
    done
    local -a results=()
    for i in "${!T_BASE[@]}"; do results[i]='未部署（在前面的失败处停止）'; done
    for i in "${!T_BASE[@]}"; do
        select_target "$i"
        say "[$((i + 1))/$n] 部署 $(target_label)"
        if (deploy_one); then
            results[i]='部署成功'
        else
            results[i]='部署失败'
            print_summary "${results[@]}"
            die "部署在 $(target_label) 失败（见上：它仍运行原来的版本，或部署前就停止了）；之后的 $((n - i - 1)) 台没有部署"
        fi
    done
    print_summary "${results[@]}"
}

# One deploy on the selected target, top to bottom. Every step's failure
# ends it with that step's exit code (also where errexit does not apply: in
# deploy_all's subshell).
deploy_one() {
    local incoming
    incoming=.incoming-$(date -u +%Y%m%dT%H%M%SZ)-$$
    # 1. Copy the code to BASE/releases/.incoming-* (deploy/transfer.sh: rsync, or tar).
    transfer "$incoming" || return
    # 2. On the target (deploy/host.sh activate): release dir, venv, token, switch `current`,
    #    start, health check. A failed check brings the old release back and ends the
    #    deploy here with a non-zero exit code.
    on_target activate "$BASE" "$incoming" ${HOST_OPTS[@]+"${HOST_OPTS[@]}"} \
        ${TARGET_ROLE:+--role "$TARGET_ROLE"} || return
    # 3. Over SSH: where the service answers and how to verify it.
    [ -z "$TARGET" ] || print_remote_summary
}

# Whether the selected target can run its role with the settings it will
# have (deploy/host.sh preflight: a worker needs Redis and PostgreSQL, say).
# Nothing is changed there.
preflight() {
    on_target preflight "$BASE" ${HOST_OPTS[@]+"${HOST_OPTS[@]}"} ${TARGET_ROLE:+--role "$TARGET_ROLE"}
}

# status / logs / restart / stop / rollback happen on each target; with one
# target its exit code is ours. With several, restart and rollback stop at
# the first failure, the others go on to every host; the exit code is the
# first non-zero one (status: 1 unhealthy, 3 not running).
operate_all() {
    local n=${#T_BASE[@]} i rc first=0
    if [ "$n" -eq 1 ]; then
        select_target 0
        [ -z "$TARGET" ] || check_ssh
        on_target "$SUB" "$BASE" ${HOST_OPTS[@]+"${HOST_OPTS[@]}"} ${TARGET_ROLE:+--role "$TARGET_ROLE"}
        return
    fi
    local -a results=()
    for i in "${!T_BASE[@]}"; do results[i]='未执行（在前面的失败处停止）'; done
    for i in "${!T_BASE[@]}"; do
        select_target "$i"
        echo "===== [$((i + 1))/$n] $(target_label) ====="
        rc=0
        ({ [ -z "$TARGET" ] || check_ssh; } &&
            on_target "$SUB" "$BASE" ${HOST_OPTS[@]+"${HOST_OPTS[@]}"} \
                ${TARGET_ROLE:+--role "$TARGET_ROLE"}) || rc=$?
        results[i]=$(outcome "$rc")
        if [ "$rc" != 0 ] && [ "$first" = 0 ]; then first=$rc; fi
        echo
        if [ "$rc" != 0 ] && { [ "$SUB" = restart ] || [ "$SUB" = rollback ]; }; then
            print_summary "${results[@]}"
            die "$SUB 在 $(target_label) 失败（见上）；之后的 $((n - i - 1)) 台没有执行"
        fi
    done
    print_summary "${results[@]}"
    return "$first"
}

# What an exit code of SUB on one host means, for the summary.
outcome() {
    case $SUB:$1 in
        status:0) echo 正常 ;;
        status:1) echo 运行但不健康 ;;
        status:3) echo 未运行 ;;
        *:0) echo 完成 ;;
        *) echo "失败（退出码 $1）" ;;
    esac
}

# print_summary RESULT...: one line per target, in the order given.
print_summary() {
    local i=0 r
    say "汇总（${#T_BASE[@]} 台）："
    for r in "$@"; do
        printf '    %-44s %-7s %s\n' "$(label_of "$i")" "${T_ROLE[i]:--}" "$r"
        i=$((i + 1))
    done
}

# ---------------------------------------------------------------------------
# Arguments and targets
# ---------------------------------------------------------------------------

SUB=
LOCAL_DIR=
OPT_PATH=
ROLE_OPT=   # --role
HOSTS_FILE= # --hosts-file
SSH_PORT=22
IDENTITY=
KNOWN_HOSTS=
SOURCE_DIR=$SCRIPT_DIR
TRANSFER=auto
ENV_FILE=    # --env-file, absolute: read here, sent with host.sh to each target
HOST_OPTS=() # options for deploy/host.sh, forwarded as given (it validates them)
SSH_OPTS=()
FOLLOW=0
# The targets, one index each: the ssh destination ('' for --local), the
# deploy path (absolute here for --local; for a server as given, or --path,
# or the default) and the role ('' = what the host recorded, else all).
T_DEST=()
T_BASE=()
T_ROLE=()
# The selected one (select_target).
TARGET=
BASE=
TARGET_ROLE=

select_target() {
    TARGET=${T_DEST[$1]}
    BASE=${T_BASE[$1]}
    TARGET_ROLE=${T_ROLE[$1]}
}

label_of() {
    if [ -z "${T_DEST[$1]}" ]; then echo "本机 ${T_BASE[$1]}"; else echo "${T_DEST[$1]}:${T_BASE[$1]}"; fi
}

target_label() {
    if [ -z "$TARGET" ]; then echo "本机 $BASE"; else echo "$TARGET:$BASE"; fi
}

valid_role() {
    case $1 in api | worker | all) return 0 ;; esac
    return 1
}

# add_target SPEC ROLE WHERE: user@host or user@host:/path, with the role
# its hosts-file line names ('' for none); WHERE prefixes messages about it.
add_target() {
    local spec=$1 role=$2 where=$3 dest path i
    case $spec in
        *:/*)
            dest=${spec%%:/*}
            path=/${spec#*:/}
            ;;
        *)
            dest=$spec
            path=''
            ;;
    esac
    if [ -z "$dest" ] || [[ $dest == -* ]]; then
        die "${where}无效的目标: $spec（应为 user@host 或 user@host:/部署目录）"
    fi
    if [ -n "$role" ] && ! valid_role "$role"; then die "${where}角色只能是 api、worker 或 all: $role"; fi
    # Both given: a hosts-file line of another role is not this command's.
    if [ -n "$role" ] && [ -n "$ROLE_OPT" ] && [ "$ROLE_OPT" != all ] && [ "$role" != "$ROLE_OPT" ]; then
        return 0
    fi
    path=${path:-${OPT_PATH:-$DEFAULT_REMOTE_PATH}}
    for i in "${!T_DEST[@]}"; do
        if [ "${T_DEST[i]}" = "$dest" ] && [ "${T_BASE[i]}" = "$path" ]; then
            die "${where}目标重复: $dest:$path"
        fi
    done
    T_DEST+=("$dest")
    T_BASE+=("$path")
    T_ROLE+=("${role:-$ROLE_OPT}")
}

# The hosts file: `user@host[:/path] [role]` per line; # starts a comment.
read_hosts_file() {
    local file=$1 line spec role extra n=0
    if [ ! -f "$file" ] || [ ! -r "$file" ]; then die "--hosts-file 不可读: $file"; fi
    while IFS= read -r line || [ -n "$line" ]; do
        n=$((n + 1))
        line=${line%%#*}
        spec='' role='' extra=''
        read -r spec role extra <<<"$line" || true
        [ -n "$spec" ] || continue
        [ -z "$extra" ] || die "--hosts-file $file 第 $n 行多余的内容: $extra（每行: user@host[:/部署目录] [api|worker|all]）"
        add_target "$spec" "$role" "--hosts-file $file 第 $n 行: "
    done <"$file"
}

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
    local -a specs=()
    while [ $# -gt 0 ]; do
        case $1 in
            --follow | -f)
                HOST_OPTS+=(--follow)
                FOLLOW=1
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
            --role)
                valid_role "$2" || die "--role 只能是 api、worker 或 all: $2"
                ROLE_OPT=$2
                ;;
            --hosts-file) HOSTS_FILE=$2 ;;
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
            --port | --host | --backend-port | --python | --venv-from | --manager | --name | --user | \
                --memory-max | --keep | --health-timeout | --lines)
                HOST_OPTS+=("$1" "$2")
                ;;
            -*) die "未知选项: $1" ;;
            *)
                specs+=("$1")
                shift
                continue
                ;;
        esac
        shift 2
    done

    if [ -n "$LOCAL_DIR" ]; then
        [ ${#specs[@]} -eq 0 ] || die "不能同时指定 ${specs[0]} 和 --local"
        [ -z "$HOSTS_FILE" ] || die "不能同时指定 --hosts-file 和 --local"
        [ -z "$OPT_PATH" ] || die "--local 已给出部署目录，不能再用 --path"
        T_DEST=('')
        T_BASE=("$(absolute "$LOCAL_DIR")")
        T_ROLE=("$ROLE_OPT")
    else
        local spec
        for spec in ${specs[@]+"${specs[@]}"}; do add_target "$spec" '' ''; done
        if [ -n "$HOSTS_FILE" ]; then read_hosts_file "$HOSTS_FILE"; fi
        if [ ${#T_DEST[@]} -eq 0 ]; then
            [ -z "$HOSTS_FILE" ] || die "--hosts-file $HOSTS_FILE 中没有角色为 $ROLE_OPT 的主机"
            die "需要目标：user@host（可以多个）、--hosts-file 文件 或 --local DIR（见 ./deploy-async.sh help）"
        fi
    fi
    if [ "$FOLLOW" = 1 ] && [ ${#T_DEST[@]} -gt 1 ]; then
        die "--follow 只能用于一台主机（现在有 ${#T_DEST[@]} 台）"
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
    if [ -n "${T_DEST[0]}" ]; then
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
        deploy/prediction-service.service.in deploy/prediction-worker.service.in; do
        [ -f "$SOURCE_DIR/$f" ] || die "代码目录 $SOURCE_DIR 中缺少 $f"
    done
    if [ -z "${T_DEST[0]}" ]; then # --local
        case "${T_BASE[0]}/" in
            "$SOURCE_DIR/"*) die "部署目录 ${T_BASE[0]} 不能位于代码目录 $SOURCE_DIR 之内" ;;
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
    if [ "$1" = activate ] || [ "$1" = preflight ]; then env_file=$ENV_FILE; fi
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

# Where an API host answers (a worker machine has no port: nothing to say).
print_remote_summary() {
    local port url
    port=$(on_target port "$BASE") || return 0
    [ -n "$port" ] || return 0
    url=http://${TARGET#*@}:$port
    say "服务地址: $url（令牌在服务器的 $BASE/shared/api_token）"
    say "验证: python3 test-async-api.py --base-url $url --token <令牌>"
}

main "$@"
