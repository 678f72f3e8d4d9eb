#!/usr/bin/env bash
# Builds the Buildfile frontend into examples/python-frontend/frontend.wasm: a virtualenv in
# .venv with componentize-py 0.25 from PyPI, then componentize-py against the repository's wit/
# directory alone. Needs python3 with the venv module (Debian: the python3-venv package).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
venv="${WBUILD_PY_VENV:-$here/.venv}"
if [ ! -x "$venv/bin/componentize-py" ]; then
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check 'componentize-py==0.25.*'
fi
cd "$here/src"
"$venv/bin/componentize-py" --wit-path "$here/../../wit" --world frontend \
    componentize app --output "$here/frontend.wasm.tmp"
mv "$here/frontend.wasm.tmp" "$here/frontend.wasm"
echo "wrote $here/frontend.wasm ($(stat -c %s "$here/frontend.wasm") bytes)"
