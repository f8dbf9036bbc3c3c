#!/usr/bin/env bash
# deploy/transfer.sh -- copy the code to deploy into BASE/releases/INCOMING on
# the target, where `deploy/host.sh activate` picks it up.
#
#   transfer.sh MODE SOURCE BASE INCOMING                      to this machine
#   transfer.sh MODE SOURCE BASE INCOMING TARGET SSH_OPTION... to TARGET over ssh
#
# MODE is auto (rsync when both ends have it, else tar), rsync or tar. rsync
# hard-links the files unchanged since the running release (--link-dest), so
# a redeploy writes only what changed. Local state, caches and the service's
# data are never copied (EXCLUDES).
set -euo pipefail

say() { printf '==> %s\n' "$*"; }
die() {
    printf '错误: %s\n' "$*" >&2
    exit 1
}

EXCLUDES=(.git .venv venv __pycache__ '*.pyc' .pytest_cache .ruff_cache .mypy_cache .hypothesis
    node_modules test-artifacts bench-out '*.log' 'tasks.sqlite3*' .staging
    'Cohort*_Predictions_*.xlsx')
TOP_EXCLUDES=(uploads results releases shared current previous)

# The exclude options of rsync (top-level names anchored with /) or tar
# (anchored with ./, as its members are named ./...).
excludes() {
    local top=$1 e
    for e in "${EXCLUDES[@]}"; do printf '%s\n' "--exclude=$e"; done
    for e in "${TOP_EXCLUDES[@]}"; do printf '%s\n' "--exclude=$top$e"; done
}

# Quote arguments for the remote shell.
remote_words() {
    local out='' a
    for a in "$@"; do out+=$(printf '%q ' "$a"); done
    printf '%s\n' "${out% }"
}

# rsync's -e splits on spaces and honours single quotes, not backslashes.
rsync_rsh() {
    local out=ssh a
    for a in "$@"; do
        case $a in *"'"*) die "SSH 参数中不能含单引号: $a" ;; esac
        out+=" '$a'"
    done
    printf '%s\n' "$out"
}

to_local() {
    local mode=$1 source=$2 base=$3 dest=$4
    local -a excl link=()
    mkdir -p "$base/releases"
    if [ "$mode" != tar ] && command -v rsync >/dev/null 2>&1; then
        mapfile -t excl < <(excludes /)
        [ -d "$base/current/" ] && link=(--link-dest="$base/current/")
        say "复制代码 (rsync) $source -> $dest"
        rsync -a --delete "${excl[@]}" ${link[@]+"${link[@]}"} "$source/" "$dest/"
    else
        [ "$mode" != rsync ] || die "本机没有 rsync（可用 --transfer tar）"
        mapfile -t excl < <(excludes ./)
        say "复制代码 (tar) $source -> $dest"
        mkdir -p "$dest"
        tar -C "$source" -cf - "${excl[@]}" . | tar -C "$dest" -xf -
    fi
}

to_remote() {
    local mode=$1 source=$2 base=$3 dest=$4 target=$5
    shift 5
    local -a ssh_opts=("$@") excl link=()
    # One round trip: make releases/, and learn whether the server has rsync
    # and a running release to hard-link against.
    local qbase found
    qbase=$(remote_words "$base")
    # shellcheck disable=SC2029  # $qbase is expanded here on purpose (quoted for the remote shell)
    found=$(ssh "${ssh_opts[@]}" "$target" "mkdir -p $qbase/releases && { command -v rsync >/dev/null 2>&1 && echo rsync=yes || echo rsync=no; } && { [ -d $qbase/current/ ] && echo current=yes || echo current=no; }" </dev/null) ||
        die "无法在 $target 上创建 $base/releases（权限不足？）"
    local use_rsync=no
    if [ "$mode" != tar ] && command -v rsync >/dev/null 2>&1 && [[ $found == *rsync=yes* ]]; then
        use_rsync=yes
    elif [ "$mode" = rsync ]; then
        die "rsync 不可用（本机或 $target 上没有 rsync）；可用 --transfer tar"
    fi
    if [ $use_rsync = yes ]; then
        mapfile -t excl < <(excludes /)
        [[ $found == *current=yes* ]] && link=(--link-dest="$base/current/")
        say "上传代码 (rsync over ssh) -> $target:$dest"
        rsync -a --delete "${excl[@]}" ${link[@]+"${link[@]}"} -e "$(rsync_rsh "${ssh_opts[@]}")" \
            "$source/" "$target:$dest/"
    else
        mapfile -t excl < <(excludes ./)
        say "上传代码 (tar over ssh) -> $target:$dest"
        local qdest
        qdest=$(remote_words "$dest")
        # shellcheck disable=SC2029  # as above
        tar -C "$source" -cf - "${excl[@]}" . | ssh "${ssh_opts[@]}" "$target" "mkdir -p $qdest && tar -C $qdest -xf -"
    fi
}

main() {
    [ $# -ge 4 ] || die "用法: transfer.sh MODE SOURCE BASE INCOMING [TARGET SSH_OPTION...]"
    local mode=$1 source=$2 base=$3 incoming=$4
    shift 4
    case $mode in auto | rsync | tar) ;; *) die "--transfer 只能是 auto、rsync 或 tar" ;; esac
    if [ $# -eq 0 ]; then
        to_local "$mode" "$source" "$base" "$base/releases/$incoming"
    else
        to_remote "$mode" "$source" "$base" "$base/releases/$incoming" "$@"
    fi
}

main "$@"
