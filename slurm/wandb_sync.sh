#!/usr/bin/env bash
# Upload offline Weights & Biases runs found under an outputs root.
#
#   slurm/wandb_sync.sh [--dry-run] [--no-rebuild] [ROOT] [-- <extra `wandb sync` options>]
#
# First, mirrors that a W&B failure cost (a done run whose summary.json says
# `"wandb": {"state": "failed", ...}`: its W&B folder lost, a full disk, an
# upload that did not finish) are rebuilt from their run folders as new offline
# runs (python -m pipeline.wandb_rebuild; --no-rebuild skips this step).
# ROOT (default: outputs) is searched for `offline-run-*` folders (what an
# offline `wandb.init` writes under its `dir`). A run is skipped when every
# .wandb file in its folder already has the `<file>.wandb.synced` marker that
# `wandb sync` writes after a successful upload. The others are synced in
# batches; an error in one batch does not stop the rest. A run counts as
# synced only if its marker exists afterwards (`wandb sync` itself can exit 0
# without uploading, e.g. when not authenticated). At the end it prints
#   found N, synced S, already synced K, failed F
# and exits 1 if F > 0.
#
# Credentials: ONLY from the environment, e.g.
#   export WANDB_API_KEY="$(cat ~/.config/wandb/key)"   # a file only you can read
#   slurm/wandb_sync.sh outputs -- --project my-project --entity my-team
# (or a ~/.netrc entry written by `wandb login`). Never pass the key on a
# command line (other users see argv in `ps`), and never commit it. This script
# never prints it: wandb's output is filtered through a mask of the key.
#
# Environment: WANDB (the wandb executable; default: the repo's .venv/bin/wandb,
# else `wandb` on PATH), LCM_PYTHON (the Python that rebuilds mirrors; default:
# the repo's .venv/bin/python, else python3), LCM_WANDB_BATCH (runs per `wandb sync` call, 20),
# LCM_WANDB_PARALLEL (`wandb sync -n`, 4), LCM_WANDB_TIMEOUT (seconds per
# batch, 1800: wandb retries an unreachable server for a long time; a batch
# that times out counts its unsynced runs as failed). WANDB_BASE_URL etc. are
# honoured by wandb itself. W&B's cache and staging area stay under ROOT
# (ROOT/.wandb-sync/) unless WANDB_CACHE_DIR / WANDB_DATA_DIR say otherwise.
set -uo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(dirname "$HERE")
dry_run=0
rebuild=1
root=""
extra=()
while [ $# -gt 0 ]; do
  case "$1" in
    --dry-run) dry_run=1; shift ;;
    --no-rebuild) rebuild=0; shift ;;
    -h|--help) sed -n '2,38p' "${BASH_SOURCE[0]}"; exit 0 ;;
    --) shift; extra=("$@"); break ;;
    *) if [ -z "$root" ]; then root=$1; shift; else echo "wandb_sync.sh: unexpected argument '$1'" >&2; exit 2; fi ;;
  esac
done
root=${root:-outputs}
[ -d "$root" ] || { echo "wandb_sync.sh: no such folder: $root" >&2; exit 2; }

if [ -n "${WANDB:-}" ]; then
  wandb_bin=$WANDB
elif [ -x "$REPO/.venv/bin/wandb" ]; then
  wandb_bin=$REPO/.venv/bin/wandb
else
  wandb_bin=wandb
fi
command -v "$wandb_bin" >/dev/null 2>&1 || { echo "wandb_sync.sh: '$wandb_bin' not found" >&2; exit 2; }
if [ -n "${LCM_PYTHON:-}" ]; then
  python_bin=$LCM_PYTHON
elif [ -x "$REPO/.venv/bin/python" ]; then
  python_bin=$REPO/.venv/bin/python
else
  python_bin=python3
fi
root=$(cd "$root" && pwd)
wandb_bin=$(command -v "$wandb_bin")
export WANDB_CACHE_DIR=${WANDB_CACHE_DIR:-$root/.wandb-sync/cache}
export WANDB_DATA_DIR=${WANDB_DATA_DIR:-$root/.wandb-sync/data}
# `wandb sync` writes its debug logs into ./wandb of its working folder: keep them under the root too
sync_home=$root/.wandb-sync
batch=${LCM_WANDB_BATCH:-20}
parallel=${LCM_WANDB_PARALLEL:-4}
batch_timeout=${LCM_WANDB_TIMEOUT:-1800}

# Print stdin with the API key (if any) masked; the key is read from the
# environment inside awk, so it never appears on a command line.
mask() {
  awk 'BEGIN { k = ENVIRON["WANDB_API_KEY"] }
       { if (length(k) >= 8) { while ((i = index($0, k)) > 0) $0 = substr($0, 1, i - 1) "****" substr($0, i + length(k)) }
         print }'
}

# is_synced DIR: every .wandb file in DIR has its .wandb.synced marker
is_synced() {
  local f any=0
  for f in "$1"/*.wandb; do
    [ -e "$f" ] || continue
    any=1
    [ -e "$f.synced" ] || return 1       # run-<id>.wandb -> run-<id>.wandb.synced
  done
  [ "$any" = 1 ]
}
has_wandb_file() { compgen -G "$1/*.wandb" >/dev/null; }

if [ "$rebuild" = 1 ]; then
  if [ "$dry_run" = 1 ]; then
    (cd "$REPO" && "$python_bin" -m pipeline.wandb_rebuild --dry-run "$root")
  else
    (cd "$REPO" && "$python_bin" -m pipeline.wandb_rebuild "$root") ||
      echo "wandb_sync.sh: some lost mirrors could not be rebuilt (continuing; see above)" >&2
  fi
fi

found=0; already=0; empty=0
todo=()
while IFS= read -r -d '' d; do
  found=$((found + 1))
  if ! has_wandb_file "$d"; then
    empty=$((empty + 1))      # no .wandb file (run crashed before writing): nothing to sync
  elif is_synced "$d"; then
    already=$((already + 1))
  else
    todo+=("$d")
  fi
done < <(find "$root" -type d -name 'offline-run-*' -print0 2>/dev/null | sort -z)

echo "wandb_sync.sh: $found offline run(s) under $root: ${#todo[@]} to sync, $already already synced, $empty without a .wandb file"
if [ "$dry_run" = 1 ]; then
  printf '  %s\n' "${todo[@]}"
  echo "wandb_sync.sh: dry run: nothing uploaded"
  exit 0
fi
if [ "${#todo[@]}" -eq 0 ]; then
  echo "wandb_sync.sh: found $found, synced 0, already synced $already, failed 0"
  exit 0
fi
if [ -z "${WANDB_API_KEY:-}" ] && ! grep -qs 'api.wandb.ai\|machine' "$HOME/.netrc"; then
  echo "wandb_sync.sh: warning: WANDB_API_KEY is not set and ~/.netrc has no entry; uploads will likely fail" >&2
fi

synced=0; failed=0
for ((i = 0; i < ${#todo[@]}; i += batch)); do
  chunk=("${todo[@]:i:batch}")
  echo "wandb_sync.sh: syncing runs $((i + 1))-$((i + ${#chunk[@]})) of ${#todo[@]}"
  # --yes: never prompt; stdin closed: never block on a login prompt.
  mkdir -p "$sync_home"
  (cd "$sync_home" && timeout -k 30 "$batch_timeout" "$wandb_bin" sync --yes -n "$parallel" "${extra[@]}" "${chunk[@]}" </dev/null 2>&1) | mask
  rc=${PIPESTATUS[0]}
  if [ "$rc" -eq 124 ] || [ "$rc" -eq 137 ]; then
    echo "wandb_sync.sh: wandb sync timed out after ${batch_timeout}s (continuing)" >&2
  elif [ "$rc" -ne 0 ]; then
    echo "wandb_sync.sh: wandb sync exited with status $rc (continuing)" >&2
  fi
  for d in "${chunk[@]}"; do
    if is_synced "$d"; then
      synced=$((synced + 1))
    else
      failed=$((failed + 1))
      echo "wandb_sync.sh: NOT synced: $d" >&2
    fi
  done
done

echo "wandb_sync.sh: found $found, synced $synced, already synced $already, failed $failed"
[ "$failed" -eq 0 ]
