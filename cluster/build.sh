#!/usr/bin/env bash
# Build the multi-call Kubernetes binary (bin/k8s) and its component symlinks.
#   bash cluster/build.sh [OUT_DIR]      (default OUT_DIR: cluster/bin)
# Go's build and module caches stay where Go keeps them (GOCACHE, GOMODCACHE: outside the
# clone), so a second build only relinks. Progress: one line per package compiled, counted
# against the total ("[ 812/2051] k8s.io/apiserver/pkg/server").
set -euo pipefail
cd "$(dirname "$0")"
OUT="${1:-bin}"
export GOTOOLCHAIN=local CGO_ENABLED=0
VERSION="v$(cat KUBERNETES_VERSION)"
MAJOR=${VERSION#v}; MAJOR=${MAJOR%%.*}
MINOR=${VERSION#v*.}; MINOR=${MINOR%%.*}
PKG=k8s.io/component-base/version
LDFLAGS="-s -w -X $PKG.gitVersion=$VERSION -X $PKG.gitMajor=$MAJOR -X $PKG.gitMinor=$MINOR \
 -X $PKG.gitCommit=0000000000000000000000000000000000000000 -X $PKG.gitTreeState=clean \
 -X $PKG.buildDate=1970-01-01T00:00:00Z"
# The same for client-go's copy, which kubectl reports as its client version.
LDFLAGS="$LDFLAGS -X k8s.io/client-go/pkg/version.gitVersion=$VERSION \
 -X k8s.io/client-go/pkg/version.gitMajor=$MAJOR -X k8s.io/client-go/pkg/version.gitMinor=$MINOR"

total=$(go list -deps ./cmd/k8s | wc -l)
start=$(date +%s)
echo "building Kubernetes $VERSION components: $total packages" >&2
mkdir -p "$OUT"
go build -trimpath -v -ldflags "$LDFLAGS" -o "$OUT/k8s.new" ./cmd/k8s 2>&1 |
  awk -v total="$total" '{ n++; printf("[%5d/%d] %s\n", n, total, $0); fflush() }' >&2
mv -f "$OUT/k8s.new" "$OUT/k8s"
go build -trimpath -ldflags "-s -w" -o "$OUT/pause" ./cmd/pause
for c in etcd kube-apiserver kube-controller-manager kube-scheduler kubelet kube-proxy kubectl; do
  ln -sf k8s "$OUT/$c"
done
echo "built $OUT/k8s ($(du -h "$OUT/k8s" | cut -f1)) in $(( $(date +%s) - start ))s" >&2
