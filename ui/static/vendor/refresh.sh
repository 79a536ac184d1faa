#!/usr/bin/env bash
# Refresh the vendored front-end assets from the npm registry: Swagger UI for /docs.
# Run from anywhere; commits nothing. The versions and npm's integrity hashes are kept in
# VENDORED.txt beside the files, so a review sees exactly what came from where.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
SWAGGER_UI_VERSION="${SWAGGER_UI_VERSION:-5.32.0}"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
cd "$work"
npm pack --silent "swagger-ui-dist@${SWAGGER_UI_VERSION}" >/dev/null
tar -xzf "swagger-ui-dist-${SWAGGER_UI_VERSION}.tgz"
mkdir -p "$here/swagger-ui"
for file in swagger-ui-bundle.js swagger-ui.css favicon-32x32.png LICENSE; do
  cp "package/$file" "$here/swagger-ui/$file"
done
integrity="$(npm view "swagger-ui-dist@${SWAGGER_UI_VERSION}" dist.integrity)"
{
  echo "# Vendored from the npm registry by refresh.sh; do not edit by hand."
  echo "swagger-ui-dist ${SWAGGER_UI_VERSION} ${integrity}"
} >"$here/VENDORED.txt"
echo "vendored swagger-ui-dist ${SWAGGER_UI_VERSION} into $here/swagger-ui"
