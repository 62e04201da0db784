#!/usr/bin/env bash
# Train on a Cloud TPU VM pod slice: every worker (host) runs the same
# command; jax.distributed.initialize() (main.py --distributed) finds the
# other workers by itself, and the mesh spans all chips.
#
# What to edit: nothing in this file; set the environment.
#   required:
#     TPU_NAME     name of the TPU VM (created if it does not exist)
#     ZONE         e.g. us-central2-b
#     REPO_URL     a git URL every worker can clone (this repository)
#     WORKDIR      a directory that *every worker sees at the same path*
#                  (orbax writes one checkpoint from all hosts): with
#                  BUCKET set, a path under /mnt/$BUCKET (gcsfuse mount made
#                  here), else e.g. a Filestore/NFS mount you provide.
#                  gs:// URLs are not accepted as --workdir (config.json,
#                  the tokenizer and results are written with open()).
#   optional:
#     ACCELERATOR_TYPE  default v4-32 (4 hosts x 4 chips)
#     RUNTIME_VERSION   default tpu-ubuntu2204-base
#     PROJECT           gcloud project (default: gcloud's configured one)
#     BUCKET            a GCS bucket to mount at /mnt/$BUCKET on every worker
#     CONFIG            default experiments/number_translation.py
#     BRANCH            git branch or tag to check out (default: the default)
#   and any main.py flags as arguments, e.g.
#     --config.mesh.data=-1 --config.mesh.fsdp=4 --config.batch_size=1024
#     --config.model.dtype=bfloat16 --config.remat=dots
#
#   TPU_NAME=encdec-v4 ZONE=us-central2-b BUCKET=my-bucket \
#   REPO_URL=https://github.com/me/encdec_jax.git \
#   WORKDIR=/mnt/my-bucket/runs/en_de launch/tpu_pod.sh --config.mesh.fsdp=-1
#
# Rerunning the script resumes the run from WORKDIR's last checkpoint.
# Delete the TPU when done: gcloud compute tpus tpu-vm delete "$TPU_NAME"
# --zone "$ZONE".
set -euo pipefail
: "${TPU_NAME:?set TPU_NAME to the TPU VM name, e.g. encdec-v4}"
: "${ZONE:?set ZONE to the TPU zone, e.g. us-central2-b}"
: "${REPO_URL:?set REPO_URL to a git URL of this repository that the workers can clone}"
: "${WORKDIR:?set WORKDIR to a directory all workers share, e.g. /mnt/\$BUCKET/runs/en_de}"
ACCELERATOR_TYPE=${ACCELERATOR_TYPE:-v4-32}
RUNTIME_VERSION=${RUNTIME_VERSION:-tpu-ubuntu2204-base}
CONFIG=${CONFIG:-experiments/number_translation.py}
BUCKET=${BUCKET:-}
BRANCH=${BRANCH:-}
GCLOUD=(gcloud compute tpus tpu-vm)
WHERE=(--zone "$ZONE")
if [ -n "${PROJECT:-}" ]; then WHERE+=(--project "$PROJECT"); fi

if ! "${GCLOUD[@]}" describe "$TPU_NAME" "${WHERE[@]}" >/dev/null 2>&1; then
  "${GCLOUD[@]}" create "$TPU_NAME" "${WHERE[@]}" \
      --accelerator-type "$ACCELERATOR_TYPE" --version "$RUNTIME_VERSION"
fi

on_all_workers() {
  "${GCLOUD[@]}" ssh "$TPU_NAME" "${WHERE[@]}" --worker=all --command "$1"
}

# 1. The same checkout and venv on every worker (idempotent).
checkout="if [ -d encdec_jax/.git ]; then git -C encdec_jax pull --ff-only;
  else git clone $(printf %q "$REPO_URL") encdec_jax; fi"
if [ -n "$BRANCH" ]; then
  checkout+="; git -C encdec_jax checkout $(printf %q "$BRANCH")"
fi
on_all_workers "set -e; $checkout; cd encdec_jax;
  [ -x .venv/bin/python ] || python3 -m venv .venv;
  .venv/bin/pip install -q -e . 'jax[tpu]'"

# 2. Optional: the bucket as a shared directory on every worker.
if [ -n "$BUCKET" ]; then
  on_all_workers "set -e; if ! command -v gcsfuse >/dev/null; then
    echo \"deb [signed-by=/usr/share/keyrings/cloud.google.asc] https://packages.cloud.google.com/apt gcsfuse-\$(lsb_release -c -s) main\" | sudo tee /etc/apt/sources.list.d/gcsfuse.list;
    curl -s https://packages.cloud.google.com/apt/doc/apt-key.gpg | sudo tee /usr/share/keyrings/cloud.google.asc >/dev/null;
    sudo apt-get update -q && sudo apt-get install -y -q gcsfuse; fi;
    sudo mkdir -p /mnt/$BUCKET && sudo chown \$USER /mnt/$BUCKET;
    mountpoint -q /mnt/$BUCKET || gcsfuse --implicit-dirs $BUCKET /mnt/$BUCKET"
fi

# 3. The run: the same command on every worker, at the same time.
args=$(printf ' %q' --config="$CONFIG" --workdir="$WORKDIR" --distributed "$@")
on_all_workers "cd encdec_jax && .venv/bin/python -m encdec_jax.main$args"
