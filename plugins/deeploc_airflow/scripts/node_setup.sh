#!/bin/bash
# DeepLocations node setup: an EMR bootstrap action on every node, and the training instance's first step.
# Installs the project's wheel and what it imports from the lock's wheelhouse: no node reaches PyPI.
# Args: <wheelhouse s3 prefix> <wheel s3 uri> <python> <base|cpu|gpu>
#   base: no TensorFlow (ingestion); cpu / gpu: TensorFlow's CPU or CUDA build. gpu: the node must have
#   a working NVIDIA driver (nvidia-smi); the setup fails loudly if it has not, rather than quietly
#   running on the CPU. An EMR primary node of a GPU cluster gets the CPU build.
set -euxo pipefail
WHEELS=$1
WHEEL=$2
PY=$3
EXTRA=$4

if [ "$EXTRA" = gpu ]; then
  if grep -qs '"isMaster": *true' /mnt/var/lib/info/instance.json; then
    EXTRA=cpu
  elif ! nvidia-smi; then
    echo "deeploc: this node was chosen for its GPU, but nvidia-smi finds no working NVIDIA driver;" \
         "use a GPU instance type and an AMI or EMR release with the driver" >&2
    exit 1
  fi
fi
command -v "$PY" || sudo dnf install -y "$PY" "$PY-pip"
work=$(mktemp -d)
aws s3 ls "$WHEELS/$EXTRA/READY" > /dev/null || {
  echo "deeploc: no wheelhouse at $WHEELS/$EXTRA: run 'python -m deeploc_airflow.aws_package wheelhouse' once" >&2
  exit 1
}
aws s3 cp --recursive --quiet "$WHEELS/$EXTRA/" "$work/wheels/"
aws s3 cp "$WHEEL" "$work/"
package="$work/$(basename "$WHEEL")"
[ "$EXTRA" = base ] || package="${package}[$EXTRA]"
sudo "$PY" -m pip install --no-index --find-links "$work/wheels" --no-cache-dir "$package"
