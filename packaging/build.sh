#!/usr/bin/env bash
# Build the installable LoRA Desk app from a clone: one folder, no Python needed to run it.
#   bash packaging/build.sh
# Makes dist/LoRA Desk/ (the loradesk executable, _internal/ with the sample data, resources/ and the
# built-in model, install.sh, uninstall.sh) and dist/loradesk-<version>-<os>-<arch>.tar.gz.
# Sets up .venv first when it is missing (packaging/setup.sh); LORADESK_VENV names another venv.
# The bundle contains whatever torch the venv has: a CUDA build of torch gives a CUDA bundle.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${LORADESK_VENV:-.venv}
if [ ! -x "$VENV/bin/python" ]; then
    bash packaging/setup.sh
    VENV=.venv
fi
PY="$VENV/bin/python"
if ! "$PY" -c "import PyInstaller" 2>/dev/null; then
    "$PY" -m pip install -q --disable-pip-version-check -e ".[bundle]"
fi
start=$(date +%s)
"$PY" -m PyInstaller --noconfirm --clean --log-level WARN --distpath dist --workpath build packaging/loradesk.spec
APP="dist/LoRA Desk"
# Symbol tables of the largest libraries: libtorch_cpu.so alone goes from 434 to 345 MB. Not PyInstaller's
# strip=True, which strips every library: the ones auditwheel patched (numpy's OpenBLAS) then fail to load
# ("ELF load command address/offset not page-aligned").
if [ "${LORADESK_BUNDLE_TRIM:-1}" != 0 ] && [ "$(uname -s)" = Linux ] && command -v strip >/dev/null; then
    find "$APP/_internal/torch/lib" "$APP/_internal/pyarrow" "$APP/_internal/python3."*/lib-dynload \
        -maxdepth 1 -name "*.so*" -type f -exec strip --strip-unneeded {} +
    find "$APP/_internal" -maxdepth 1 -name "libpython3*.so*" -type f -exec strip --strip-unneeded {} +
fi
cp packaging/install.sh packaging/uninstall.sh "$APP/"
chmod +x "$APP/install.sh" "$APP/uninstall.sh"
version=$("$PY" -c "import loradesk; print(loradesk.__version__)")
os=$(uname -s | tr '[:upper:]' '[:lower:]')
archive="dist/loradesk-$version-$os-$(uname -m).tar.gz"
tar -C dist -czf "$archive" "LoRA Desk"
echo "Built $APP ($(du -sh "$APP" | cut -f1)) and $archive ($(du -h "$archive" | cut -f1)) in $(( $(date +%s) - start )) s"
