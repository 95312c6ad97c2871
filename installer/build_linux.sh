#!/usr/bin/env bash
# Build the Linux one-folder bundle with PyInstaller, then run its self-test offscreen.
#   installer/build_linux.sh [--tar]
# Output: dist/restorer/ (restorer, restorer-cli, restorer.desktop, restorer.svg);
# with --tar also dist/restorer-linux-<arch>.tar.gz. Env PYTHON picks the interpreter.
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-python3}"

if ! "$PY" -m PyInstaller --version >/dev/null 2>&1; then
    echo "installing PyInstaller..."
    "$PY" -m pip install "pyinstaller>=6.0"
fi
"$PY" -c "import torch, PySide6; print('torch', torch.__version__, 'CUDA' if torch.version.cuda else 'CPU')"

start=$(date +%s)
"$PY" -m PyInstaller --noconfirm --clean --log-level WARN \
    --distpath dist --workpath build/pyinstaller installer/restorer.spec
built=$(date +%s)
echo "PyInstaller build took $((built - start)) s; bundle size: $(du -sh dist/restorer | cut -f1)"

cp installer/restorer.desktop installer/restorer.svg dist/restorer/

echo "running the bundled self-test (offscreen, CPU)..."
export QT_QPA_PLATFORM=offscreen
export RESTORER_MODELS_DIR="${RESTORER_MODELS_DIR:-$(mktemp -d)}"
status=0
./dist/restorer/restorer-cli --self-test || status=$?
./dist/restorer/restorer --self-test || status=$?
./dist/restorer/restorer-cli models list >/dev/null || status=$?
tested=$(date +%s)
echo "self-test took $((tested - built)) s"

if [[ "${1:-}" == "--tar" ]]; then
    tar -C dist -czf "dist/restorer-linux-$(uname -m).tar.gz" restorer
    echo "wrote dist/restorer-linux-$(uname -m).tar.gz"
fi
if [[ $status -ne 0 ]]; then
    echo "SELF-TEST FAILED" >&2
    exit $status
fi
echo "bundle OK: dist/restorer/restorer"
