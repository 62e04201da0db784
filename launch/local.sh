#!/usr/bin/env bash
# Local run on this machine (CPU, or one GPU/TPU host): sets up .venv on first
# use, then trains an experiment. The README's main job is this script with no
# arguments.
#
# Edit nothing; pass arguments instead:
#   launch/local.sh [CONFIG] [WORKDIR] [extra main.py flags, e.g. --config.batch_size=64]
set -euo pipefail
cd "$(dirname "$0")/.."
CONFIG=${1:-experiments/number_translation.py}
WORKDIR=${2:-runs/en_de}
shift $(( $# > 2 ? 2 : $# ))
if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
  .venv/bin/pip install -q -e .
fi
exec .venv/bin/python -m encdec_jax.main --config="$CONFIG" --workdir="$WORKDIR" "$@"
