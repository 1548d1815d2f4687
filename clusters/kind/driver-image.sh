#!/usr/bin/env bash
# The reference drivers' image without a registry: deploy/Dockerfile on the debootstrap base
# (base-image.sh), installing from wheels downloaded here first (PyPI, as `make install` does),
# so the build itself fetches nothing.
#
# usage: driver-image.sh [TAG]     (default localhost/dra-harness-refdriver:dev); prints TAG
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../.." && pwd)
tag=${1:-localhost/dra-harness-refdriver:dev}
py=${PYTHON:-$root/.venv/bin/python}
base=$("$here/base-image.sh")
wheels="$root/deploy/wheels"
rm -f "$wheels"/*.whl
echo "driver-image: wheels of dra-harness[stubs] for Debian's python3 3.11" >&2
"$py" -m pip wheel -q --wheel-dir "$wheels" "$root[stubs]" >&2
echo "driver-image: building $tag on $base" >&2
DOCKER_BUILDKIT=0 docker build -q -f "$root/deploy/Dockerfile" --build-arg "BASE_IMAGE=$base" -t "$tag" "$root" >&2
rm -f "$wheels"/*.whl
echo "$tag"
