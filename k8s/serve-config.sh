#!/usr/bin/env bash
# Regenerate the Serve configs the RayServices embed (spec.serveConfigV2), with `skelray serve build`.
#
#   k8s/serve-config.sh [BUNDLE] [OUT]
#
# BUNDLE: the bundle folder `skelray export` wrote; its manifest.json is copied to k8s/bundle/
# so the configs can be rebuilt (and checked by tests/deploy) without the weights: `serve build`
# reads only the manifest. Default: k8s/bundle, i.e. rebuild from the manifest already there.
# OUT: where base/ and overlays/gpu/ go (default: this folder; the tests pass a temporary one).
# On the cluster the bundle lives at /bundles/best (the results volume's bundles/best).
set -euo pipefail
K8S="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(dirname "$K8S")"
SKELRAY="${SKELRAY:-$ROOT/.venv/bin/skelray}"
[[ -x "$SKELRAY" ]] || SKELRAY=skelray
BUNDLE="${1:-$K8S/bundle}"
OUT="${2:-$K8S}"
BUNDLE_PATH=/bundles/best

if [[ ! "$BUNDLE" -ef "$K8S/bundle" ]]; then
  mkdir -p "$K8S/bundle"
  cp "$BUNDLE/manifest.json" "$K8S/bundle/manifest.json"
fi
mkdir -p "$OUT/base" "$OUT/overlays/gpu"
# CPU (base, and the cpu overlay that inherits it): the default fused graph, one replica of one
# core holding every member.
"$SKELRAY" serve build "$K8S/bundle" --bundle-path "$BUNDLE_PATH" -o "$OUT/base/serve_config.yaml" > /dev/null
# GPU: the per-member graph (chosen by --num-gpus); two member replicas share each GPU; batches of
# up to 32 clips.
"$SKELRAY" serve build "$K8S/bundle" --bundle-path "$BUNDLE_PATH" --num-gpus 0.5 --num-cpus 2 \
  --max-batch-size 32 --replicas 2 -o "$OUT/overlays/gpu/serve_config.yaml" > /dev/null
echo "wrote $OUT/base/serve_config.yaml and $OUT/overlays/gpu/serve_config.yaml (bundle at $BUNDLE_PATH)"
