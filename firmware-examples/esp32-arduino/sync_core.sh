#!/usr/bin/env sh
# Copies the portable device core into the sketch (otter_ota/src/otter_core/), where the
# Arduino builder compiles it with the sketch. The copy is git-ignored: the core lives in
# firmware-examples/core only. Run again after changing the core.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
dest="$here/otter_ota/src/otter_core"
mkdir -p "$dest"
cp "$here/../core/otter_core.h" "$here/../core/otter_core.c" "$here/../core/otter_json.c" \
   "$here/../core/otter_crypto.h" "$here/../core/otter_crypto_mbedtls.c" "$dest/"
echo "core copied to $dest"
