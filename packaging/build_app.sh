#!/usr/bin/env bash
# Build the standalone PRDiT Studio application folder and prove that the built binary works.
#
#   bash packaging/build_app.sh              # build dist/prdit-studio/, then smoke-test it
#   bash packaging/build_app.sh --no-build   # only smoke-test an existing dist/prdit-studio/
#   bash packaging/build_app.sh --archive    # also write dist/prdit-studio-<version>-linux-x86_64.tar.gz
#
# Steps: install PyInstaller if missing (it is in the project's `dev` extra), run the recipe
# packaging/pyinstaller/prdit-studio.spec, then run the *built* binary (never the source tree):
#   1. `prdit --version` and `prdit-studio -m prdit --version` (the CLI the studio's panels start);
#   2. `prdit phantom` writes a NIfTI, and `prdit info` reads it back (torch, SimpleITK, nibabel);
#   3. the studio's scripted mode offscreen: opens a phantom, renders the slice views and saves a
#      screenshot, which must be a real, non-uniform PNG;
#   4. the 3D view renders offscreen through VTK (when this machine has any OpenGL: EGL or OSMesa);
#   5. `-m prdit train` runs 2 training steps of the phantom-tiny preset and `prdit sample` samples
#      the checkpoint (optimizer, checkpoints, sampler: the whole engine inside the bundle);
#   6. when the bundled model exists (resources/models/), `prdit sample` generates one volume with
#      it, and the studio's scripted `--generate` mode samples and screenshots one.
# Exit status 0 only if everything passed. Takes ~10 minutes on a 2-core machine (packaging/README.md).
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(dirname "$HERE")"
cd "$ROOT"

BUILD=1
ARCHIVE=0
for arg in "$@"; do
    case "$arg" in
        --no-build) BUILD=0 ;;
        --archive) ARCHIVE=1 ;;
        -h|--help) awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "${BASH_SOURCE[0]}"; exit 0 ;;
        *) echo "build_app: error: unknown option '$arg' (see --help)" >&2; exit 2 ;;
    esac
done

PYTHON="${PYTHON:-python3}"
DIST="$ROOT/dist"
APP="$DIST/prdit-studio"
BIN="$APP/prdit-studio"
CLI="$APP/prdit"
SMOKE="$(mktemp -d "${TMPDIR:-/tmp}/prdit-app-smoke.XXXXXX")"
trap 'rm -rf "$SMOKE"' EXIT

step() { printf '\n== build_app: %s\n' "$*"; }
fail() { echo "build_app: FAILED: $*" >&2; exit 1; }

if [ "$BUILD" = 1 ]; then
    if ! "$PYTHON" -c "import PyInstaller" >/dev/null 2>&1; then
        step "installing PyInstaller (the project's dev extra pins pyinstaller>=6.0)"
        "$PYTHON" -m pip install "pyinstaller>=6.0"
    fi
    "$PYTHON" -c "import PySide6, pyqtgraph, vtkmodules, torch, SimpleITK" 2>/dev/null ||
        fail "the GUI stack is not installed for $PYTHON: pip install -e \".[gui,dev]\" first"
    step "PyInstaller $("$PYTHON" -c 'import PyInstaller; print(PyInstaller.__version__)') -> $APP"
    start=$(date +%s)
    "$PYTHON" -m PyInstaller --noconfirm --clean --log-level WARN \
        --distpath "$DIST" --workpath "$ROOT/build/pyinstaller" \
        packaging/pyinstaller/prdit-studio.spec
    echo "build_app: built in $(( $(date +%s) - start )) s"
fi

[ -x "$BIN" ] || fail "$BIN does not exist: run without --no-build"
step "bundle size: $(du -sh "$APP" | cut -f1) ($(find "$APP" -type f | wc -l) files)"

step "1/6 CLI entry points"
"$CLI" --version || fail "$CLI --version"
"$BIN" -m prdit --version || fail "$BIN -m prdit --version"
"$BIN" --version || fail "$BIN --version"

step "2/6 prdit phantom + prdit info (torch, SimpleITK, nibabel in the bundle)"
"$CLI" phantom --help >/dev/null || fail "prdit phantom --help"
"$CLI" phantom --out "$SMOKE/phantoms" --count 1 --size 32 --no-progress || fail "prdit phantom"
vol="$(find "$SMOKE/phantoms" -name '*.nii.gz' | head -n 1)"
[ -n "$vol" ] || fail "prdit phantom wrote no .nii.gz under $SMOKE/phantoms"
"$CLI" info "$vol" || fail "prdit info $vol"

step "3/6 studio scripted mode, offscreen (Qt, pyqtgraph, resources)"
shot="$SMOKE/studio.png"
QT_QPA_PLATFORM=offscreen "$BIN" --phantom 1 --size 64 --no-3d --window-size 1200x800 \
    --screenshot "$shot" --quit || fail "the studio's scripted mode exited non-zero"
"$PYTHON" - "$shot" <<'EOF' || fail "the screenshot is not a plausible picture of the studio"
import sys
from PIL import Image
import numpy as np

path = sys.argv[1]
img = np.asarray(Image.open(path).convert("L"), dtype=np.float32)
h, w = img.shape
print(f"build_app: screenshot {path}: {w}x{h}, grey std {img.std():.1f}, distinct {len(np.unique(img))}")
if w < 600 or h < 400:
    sys.exit(f"{path}: {w}x{h} is smaller than the 1200x800 window asked for")
if img.std() < 10 or len(np.unique(img)) < 32:
    sys.exit(f"{path}: nearly uniform (std {img.std():.1f}); the views did not render")
EOF
cp "$shot" "$DIST/prdit-studio-smoke.png"

step "4/6 3D view: VTK volume rendering offscreen (EGL/OSMesa) inside the bundle"
shot3d="$SMOKE/studio-3d.png"
if QT_QPA_PLATFORM=offscreen "$BIN" --phantom 1 --size 64 --vtk-offscreen --vr-preset CT-Bone \
    --screenshot "$shot3d" --screenshot-view 3d --quit; then
    [ -s "$shot3d" ] || fail "the 3D screenshot is empty"
    cp "$shot3d" "$DIST/prdit-studio-smoke-3d.png"
elif QT_QPA_PLATFORM=offscreen "$PYTHON" -m prdit_app.main --phantom 1 --size 64 --vtk-offscreen \
    --screenshot "$SMOKE/source-3d.png" --screenshot-view 3d --quit >/dev/null 2>&1; then
    fail "3D rendering works from the source tree but not in the bundle (missing VTK module or GL library)"
else
    echo "build_app: WARNING: no working OpenGL on this machine (the source tree fails too); 3D not checked"
fi

step "5/6 training and sampling inside the bundle (what the Train panel starts: -m prdit train)"
"$BIN" -m prdit train phantom-tiny --max-steps 2 --set checkpoint.every=2 --set log.val_every=0 \
    --set log.preview_every=0 --device cpu --no-progress --out "$SMOKE/run" || fail "prdit train (2 steps)"
"$CLI" sample "$SMOKE/run" --count 1 --steps 4 --device cpu --no-progress --out "$SMOKE/run-samples" ||
    fail "prdit sample from the 2-step run"
[ -s "$SMOKE/run-samples/sample_00000.nii.gz" ] || fail "prdit sample wrote no sample_00000.nii.gz"

step "6/6 generation with the bundled model"
model="$(find "$APP/_internal/resources/models" -mindepth 1 -maxdepth 1 ! -name '.*' 2>/dev/null | sort | head -n 1 || true)"
if [ -n "$model" ]; then
    "$CLI" sample "$model" --count 1 --steps 4 --device cpu --no-progress --out "$SMOKE/samples" ||
        fail "prdit sample $model"
    [ -s "$SMOKE/samples/sample_00000.nii.gz" ] || fail "prdit sample wrote no sample_00000.nii.gz"
    generate_help="$("$BIN" --generate --help 2>/dev/null || true)"
    if [[ "$generate_help" == *--checkpoint* ]]; then  # the studio has the scripted --generate mode
        gshot="$SMOKE/generate.png"
        QT_QPA_PLATFORM=offscreen "$BIN" --generate --steps 8 --seed 0 --device cpu --no-3d \
            --window-size 1200x800 --screenshot "$gshot" --quit || fail "the studio's scripted --generate mode"
        [ -s "$gshot" ] || fail "--generate saved no screenshot at $gshot"
        cp "$gshot" "$DIST/prdit-studio-generate.png"
        echo "build_app: scripted generation OK ($DIST/prdit-studio-generate.png)"
    else
        echo "build_app: this studio has no --generate mode; generated through the CLI only"
    fi
else
    echo "build_app: no bundled model under resources/models yet; generation check skipped"
fi

if [ "$ARCHIVE" = 1 ]; then
    version="$("$CLI" --version | awk '{print $2}')"
    tarball="$DIST/prdit-studio-$version-linux-$(uname -m).tar.gz"
    step "archive $tarball"
    tar -C "$DIST" -czf "$tarball.tmp" prdit-studio && mv -f "$tarball.tmp" "$tarball"
    ls -lh "$tarball"
fi

step "OK: $APP passed the smoke checks (screenshot: $DIST/prdit-studio-smoke.png)"
