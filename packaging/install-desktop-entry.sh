#!/usr/bin/env bash
# Put PRDiT Studio into the desktop's application menu, for the current user (no root needed).
#
#   bash packaging/install-desktop-entry.sh                 # after `pip install ".[gui]"`
#   bash packaging/install-desktop-entry.sh --exec dist/prdit-studio/prdit-studio   # app bundle
#   bash packaging/install-desktop-entry.sh --uninstall
#
# Installs, under $XDG_DATA_HOME (default ~/.local/share) or --prefix DIR:
#   applications/io.github.prdit.Studio.desktop      Exec/TryExec set to the absolute program path
#   icons/hicolor/NxN/apps/io.github.prdit.Studio.png (16..256) and scalable/apps/...svg
#   metainfo/io.github.prdit.Studio.metainfo.xml     AppStream (software centres)
#   mime/packages/io.github.prdit.Studio.mime.xml    the NIfTI type (.nii, .nii.gz)
# then refreshes the desktop, MIME and icon caches when those tools exist.
#
# Why an absolute Exec: a desktop session's PATH often lacks ~/.local/bin or the virtual
# environment pip installed into, and the menu entry would silently do nothing.
set -euo pipefail

APP_ID="io.github.prdit.Studio"
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(dirname "$HERE")"
LINUX="$HERE/linux"
ICONS="$ROOT/resources/icons"
SIZES=(16 24 32 48 64 128 256)

usage() {
    awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "${BASH_SOURCE[0]}"
    cat <<EOF
Options:
  --exec PATH     program the menu entry starts (default: prdit-studio found on PATH)
  --prefix DIR    install under DIR instead of \${XDG_DATA_HOME:-~/.local/share}
  --uninstall     remove what this script installs
  --no-cache      do not refresh the desktop/MIME/icon caches
  -h, --help      this text
EOF
}

die() {
    echo "install-desktop-entry: error: $*" >&2
    exit 2
}

EXEC=""
PREFIX="${XDG_DATA_HOME:-$HOME/.local/share}"
UNINSTALL=0
CACHES=1
while [ $# -gt 0 ]; do
    case "$1" in
        --exec) [ $# -ge 2 ] || die "--exec needs a path"; EXEC="$2"; shift 2 ;;
        --exec=*) EXEC="${1#--exec=}"; shift ;;
        --prefix) [ $# -ge 2 ] || die "--prefix needs a folder"; PREFIX="$2"; shift 2 ;;
        --prefix=*) PREFIX="${1#--prefix=}"; shift ;;
        --uninstall) UNINSTALL=1; shift ;;
        --no-cache) CACHES=0; shift ;;
        -h|--help) usage; exit 0 ;;
        *) die "unknown option '$1' (see --help)" ;;
    esac
done

APPS="$PREFIX/applications"
HICOLOR="$PREFIX/icons/hicolor"
METAINFO="$PREFIX/metainfo"
MIME="$PREFIX/mime"

refresh_caches() {
    [ "$CACHES" = 1 ] || return 0
    if command -v update-desktop-database >/dev/null 2>&1; then
        update-desktop-database -q "$APPS" 2>/dev/null || true
    fi
    if command -v update-mime-database >/dev/null 2>&1 && [ -d "$MIME/packages" ]; then
        update-mime-database "$MIME" >/dev/null 2>&1 || true
    fi
    if command -v gtk-update-icon-cache >/dev/null 2>&1 && [ -d "$HICOLOR" ]; then
        gtk-update-icon-cache -q -t -f "$HICOLOR" 2>/dev/null || true
    fi
}

if [ "$UNINSTALL" = 1 ]; then
    rm -f "$APPS/$APP_ID.desktop" "$METAINFO/$APP_ID.metainfo.xml" "$MIME/packages/$APP_ID.mime.xml" \
        "$HICOLOR/scalable/apps/$APP_ID.svg"
    for n in "${SIZES[@]}"; do rm -f "$HICOLOR/${n}x${n}/apps/$APP_ID.png"; done
    refresh_caches
    echo "install-desktop-entry: removed $APP_ID from $PREFIX"
    exit 0
fi

# --- the program the entry starts ---------------------------------------------------------------
if [ -z "$EXEC" ]; then
    EXEC="$(command -v prdit-studio || true)"
    [ -n "$EXEC" ] || die "prdit-studio is not on PATH: install the project first (pip install \".[gui]\") \
or pass --exec /path/to/prdit-studio (e.g. dist/prdit-studio/prdit-studio from packaging/build_app.sh)"
fi
[ -f "$EXEC" ] || die "--exec $EXEC: no such file"
[ -x "$EXEC" ] || die "--exec $EXEC: not executable"
EXEC="$(cd "$(dirname "$EXEC")" && pwd)/$(basename "$EXEC")"
case "$EXEC" in
    *[\"\`\$\\]*) die "--exec $EXEC: the path contains a quote, backquote, dollar or backslash" ;;
esac

# --- check the sources before writing anything --------------------------------------------------
[ -f "$LINUX/$APP_ID.desktop" ] || die "$LINUX/$APP_ID.desktop is missing"
[ -f "$LINUX/$APP_ID.metainfo.xml" ] || die "$LINUX/$APP_ID.metainfo.xml is missing"
[ -f "$ICONS/prdit-studio.svg" ] || die "$ICONS/prdit-studio.svg is missing"
for n in "${SIZES[@]}"; do
    [ -f "$ICONS/prdit-studio-$n.png" ] || die "$ICONS/prdit-studio-$n.png is missing"
done

# install SRC DEST: copy through a temporary name in the destination folder, then rename, so a
# desktop that rescans mid-install never sees a half-written file.
install_file() {
    local src="$1" dest="$2" tmp
    mkdir -p "$(dirname "$dest")"
    tmp="$(mktemp "$(dirname "$dest")/.$(basename "$dest").XXXXXX")"
    cat "$src" >"$tmp"
    chmod 644 "$tmp"
    mv -f "$tmp" "$dest"
}

# Desktop entry with the absolute program path (quoted per the Desktop Entry spec if it has spaces).
quoted="$EXEC"
case "$EXEC" in *" "*) quoted="\"$EXEC\"" ;; esac
entry="$(mktemp --suffix=.desktop)"
trap 'rm -f "$entry"' EXIT
sed -e "s|^Exec=prdit-studio |Exec=$quoted |" -e "s|^TryExec=.*|TryExec=$EXEC|" \
    "$LINUX/$APP_ID.desktop" >"$entry"
grep -q "^Exec=$quoted " "$entry" || die "could not set Exec in $LINUX/$APP_ID.desktop"
if command -v desktop-file-validate >/dev/null 2>&1; then
    desktop-file-validate "$entry" || die "the generated desktop entry does not validate"
fi

install_file "$entry" "$APPS/$APP_ID.desktop"
install_file "$LINUX/$APP_ID.metainfo.xml" "$METAINFO/$APP_ID.metainfo.xml"
install_file "$LINUX/$APP_ID.mime.xml" "$MIME/packages/$APP_ID.mime.xml"
install_file "$ICONS/prdit-studio.svg" "$HICOLOR/scalable/apps/$APP_ID.svg"
for n in "${SIZES[@]}"; do
    install_file "$ICONS/prdit-studio-$n.png" "$HICOLOR/${n}x${n}/apps/$APP_ID.png"
done
refresh_caches

echo "install-desktop-entry: installed $APP_ID into $PREFIX (starts $EXEC)"
