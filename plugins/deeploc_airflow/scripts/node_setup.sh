#!/bin/bash
# DeepLocations node setup: an EMR bootstrap action on every node, and the training instance's first step.
# Installs the project's wheel and what it imports, at the versions of the project's lock.
# Args: <constraints s3 uri> <wheel s3 uri> <python> <cpu|gpu>
#   gpu: the node must have a working NVIDIA driver (nvidia-smi); the setup fails loudly if it has not,
#   rather than quietly running on the CPU. An EMR primary node always gets the CPU build.
set -euxo pipefail
CONSTRAINTS=$1
WHEEL=$2
PY=$3
ACCEL=$4

extra=cpu
if [ "$ACCEL" = gpu ] && ! grep -qs '"isMaster": *true' /mnt/var/lib/info/instance.json; then
  if ! nvidia-smi; then
    echo "deeploc: this node was chosen for its GPU, but nvidia-smi finds no working NVIDIA driver;" \
         "use a GPU instance type and an AMI or EMR release with the driver" >&2
    exit 1
  fi
  extra=gpu
fi
command -v "$PY" || sudo dnf install -y "$PY" "$PY-pip"
work=$(mktemp -d)
aws s3 cp "$CONSTRAINTS" "$work/constraints.txt"
aws s3 cp "$WHEEL" "$work/"
sudo "$PY" -m pip install --no-cache-dir --constraint "$work/constraints.txt" "$work/$(basename "$WHEEL")[$extra]"
