#!/usr/bin/env bash
# Build the jar of tasks/deeploc/jvm (Hadoop's local file system with permissions set in-process).
#   scripts/build_localfs_jar.sh PYTHON OUT.jar
# PYTHON is the interpreter whose pyspark provides the Hadoop classes to compile against.
# Exits 3, having built nothing, when no JDK (javac, jar) is on the PATH: the jar is optional.
set -euo pipefail
python="$1" out="$2"
src="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/tasks/deeploc/jvm/NioLocalFileSystem.java"
command -v javac >/dev/null 2>&1 && command -v jar >/dev/null 2>&1 || exit 3
jars="$("$python" -c 'import os, pyspark; print(os.path.join(os.path.dirname(pyspark.__file__), "jars"))')"
api="$(ls "$jars"/hadoop-client-api-*.jar)"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
javac --release 17 -cp "$api" -d "$tmp/classes" "$src"
jar cf "$tmp/localfs.jar" -C "$tmp/classes" .
mv "$tmp/localfs.jar" "$out"
