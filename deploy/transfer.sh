#!/usr/bin/env bash
# deploy/transfer.sh -- copy the code to deploy into BASE/releases/INCOMING on
# the target, where `deploy/host.sh activate` picks it up.
#
#   transfer.sh MODE SOURCE BASE INCOMING                      to this machine
#   transfer.sh MODE SOURCE BASE INCOMING TARGET SSH_OPTION... to TARGET over ssh
#
# MODE is auto (rsync when both ends have it, else tar), rsync or tar. rsync
# hard-links the files unchanged since the running release (--link-dest), so
# a redeploy writes only what changed.
#
# What is copied is a list of files, never the directory as it is: a project
# folder holds local data -- a grade workbook someone exported, a database of
# predictions -- that must never leave this machine. From a git checkout the
# list is what git tracks (`git ls-files`: the working tree's version of each
# tracked file) plus the bundled models/ and plans/; untracked files are
# named in a warning and stay here. From a plain directory (an unpacked
# release archive) it is every file but caches, state and data files
# (EXCLUDES, DATA, TOP_EXCLUDES).
set -euo pipefail

# shellcheck source=deploy/common.sh
. "$(dirname "${BASH_SOURCE[0]}")/common.sh"

# Never in a release from a plain directory: caches, local state ...
EXCLUDES=(.git .venv venv __pycache__ '*.pyc' .pytest_cache .ruff_cache .mypy_cache .hypothesis
    .schemathesis node_modules test-artifacts bench-out '*.log' .staging)
# ... data (models/ and plans/ excepted: the demo model and plans are code) ...
DATA=('*.sqlite3' '*.sqlite3-*' '*.sqlite' '*.db' '*.xlsx' '*.xls' '*.csv' '*.lock')
# ... and, at the top only, the service's data dirs and a deploy's own layout.
TOP_EXCLUDES=(uploads results releases shared current previous nginx)
# The files a release cannot run without.
REQUIRED=(async_api_server.py gunicorn.conf.py requirements.txt deploy/run-service.sh
    deploy/prediction-service.service.in deploy/prediction-worker.service.in)

is_git_checkout() {
    command -v git >/dev/null 2>&1 &&
        [ "$(git -C "$1" rev-parse --is-inside-work-tree 2>/dev/null)" = true ]
}

# The files to ship: NUL-separated paths relative to SOURCE.
ship_list() {
    local source=$1
    (
        cd "$source"
        if is_git_checkout .; then
            local f
            git ls-files -z --cached | while IFS= read -r -d '' f; do
                case $f in uploads/* | results/*) continue ;; esac
                if [ -f "$f" ] || [ -L "$f" ]; then printf '%s\0' "$f"; fi
            done
            find models plans \( -type f -o -type l \) -print0 2>/dev/null || true
        else
            local -a prune=() data=()
            local e
            for e in "${EXCLUDES[@]}"; do prune+=(-name "$e" -o); done
            for e in "${TOP_EXCLUDES[@]}"; do prune+=(-path "./$e" -o); done
            for e in "${DATA[@]}"; do data+=(-name "$e" -o); done
            find . \( "${prune[@]}" -false \) -prune -o \( -type f -o -type l \) \
                ! \( \( "${data[@]}" -false \) ! -path './models/*' ! -path './plans/*' \) -print0 |
                while IFS= read -r -d '' f; do printf '%s\0' "${f#./}"; done
        fi
    ) | sort -zu
}

# Untracked files of a git checkout that are not ignored: named, not shipped.
warn_untracked() {
    local source=$1 n shown
    is_git_checkout "$source" || return 0
    n=$(git -C "$source" ls-files --others --exclude-standard | wc -l)
    [ "$n" -gt 0 ] || return 0
    shown=$(git -C "$source" ls-files --others --exclude-standard | head -n 5 | tr '\n' ' ')
    warn "$n 个未被 git 跟踪的文件不会部署（只部署 git 跟踪的文件和 models/、plans/）：${shown% }$([ "$n" -gt 5 ] && echo ' …')；需要部署的文件请先 git add"
}

# LIST (a file) holds every required file, or the deploy stops here.
check_list() {
    local list=$1 source=$2 f names
    names=$(tr '\0' '\n' <"$list")
    for f in "${REQUIRED[@]}"; do
        if [[ $'\n'$names$'\n' != *$'\n'$f$'\n'* ]]; then
            if is_git_checkout "$source"; then
                die "$f 没有被 git 跟踪（只部署 git 跟踪的文件；先 git add $f）"
            fi
            die "代码目录 $source 中缺少 $f"
        fi
    done
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
    local mode=$1 source=$2 base=$3 dest=$4 list=$5
    local -a link=()
    mkdir -p "$base/releases"
    if [ "$mode" != tar ] && command -v rsync >/dev/null 2>&1; then
        [ -d "$base/current/" ] && link=(--link-dest="$base/current/")
        say "复制代码 (rsync) $source -> $dest"
        rsync -a --from0 --files-from="$list" ${link[@]+"${link[@]}"} "$source/" "$dest/"
    else
        [ "$mode" != rsync ] || die "本机没有 rsync（可用 --transfer tar）"
        say "复制代码 (tar) $source -> $dest"
        mkdir -p "$dest"
        tar -C "$source" -cf - --null -T "$list" | tar -C "$dest" -xf -
    fi
}

to_remote() {
    local mode=$1 source=$2 base=$3 dest=$4 list=$5 target=$6
    shift 6
    local -a ssh_opts=("$@") link=()
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
        [[ $found == *current=yes* ]] && link=(--link-dest="$base/current/")
        say "上传代码 (rsync over ssh) -> $target:$dest"
        rsync -a --from0 --files-from="$list" ${link[@]+"${link[@]}"} \
            -e "$(rsync_rsh "${ssh_opts[@]}")" "$source/" "$target:$dest/"
    else
        say "上传代码 (tar over ssh) -> $target:$dest"
        local qdest
        qdest=$(remote_words "$dest")
        # shellcheck disable=SC2029  # as above
        tar -C "$source" -cf - --null -T "$list" |
            ssh "${ssh_opts[@]}" "$target" "mkdir -p $qdest && tar -C $qdest -xf -"
    fi
}

main() {
    [ $# -ge 4 ] || die "用法: transfer.sh MODE SOURCE BASE INCOMING [TARGET SSH_OPTION...]"
    local mode=$1 source=$2 base=$3 incoming=$4
    shift 4
    case $mode in auto | rsync | tar) ;; *) die "--transfer 只能是 auto、rsync 或 tar" ;; esac
    local list
    list=$(mktemp "${TMPDIR:-/tmp}/deploy-files.XXXXXX")
    # shellcheck disable=SC2064 # $list is fixed now
    trap "rm -f '$list'" EXIT
    ship_list "$source" >"$list"
    check_list "$list" "$source"
    warn_untracked "$source"
    # macOS tar: no AppleDouble ._ files in the release.
    export COPYFILE_DISABLE=1
    if [ $# -eq 0 ]; then
        to_local "$mode" "$source" "$base" "$base/releases/$incoming" "$list"
    else
        to_remote "$mode" "$source" "$base" "$base/releases/$incoming" "$list" "$@"
    fi
}

main "$@"
