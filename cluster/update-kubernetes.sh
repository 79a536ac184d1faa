#!/bin/sh
# Point this module at another Kubernetes release: pin k8s.io/kubernetes, replace every
# staging module with its published v0.<minor>.<patch> (upstream's ./staging replaces do not
# apply to consumers), mirror upstream's go/godebug lines, and tidy. Reads upstream's go.mod
# from the module cache; no network except the Go module proxy.
#   sh update-kubernetes.sh 1.34.4
set -eu
V=${1:?usage: update-kubernetes.sh 1.34.4}
SV=v0.${V#1.}
cd "$(dirname "$0")"
export GOTOOLCHAIN=local
GOMOD=$(cd "$(mktemp -d)" && go mod download -json "k8s.io/kubernetes@v$V" |
  sed -n 's/.*"GoMod": "\(.*\)".*/\1/p')
for m in $(sed -n 's|^[[:space:]]*\(k8s.io/[a-z0-9-]*\) => \./staging/.*|\1|p' "$GOMOD"); do
  go mod edit "-replace=$m=$m@$SV"
done
ETCD=$(sed -n 's|^[[:space:]]*go.etcd.io/etcd/client/v3 \(v[0-9.]*\).*|\1|p' "$GOMOD")
go mod edit "-require=k8s.io/kubernetes@v$V" "-require=go.etcd.io/etcd/server/v3@$ETCD"
grep -E '^godebug ' "$GOMOD" | while read -r _ setting; do go mod edit "-godebug=$setting"; done
echo "$V" > KUBERNETES_VERSION
go mod tidy
