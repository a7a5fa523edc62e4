#!/bin/sh
# Install LoRA Desk for this user from the unpacked archive:
#   ./install.sh            copies this folder to ~/.local/share/loradesk
#   ./install.sh PREFIX     copies it to PREFIX instead
# and adds a menu entry (~/.local/share/applications/loradesk.desktop, with the app's icon) and a
# `loradesk` command in ~/.local/bin. Your runs, models and autosave live elsewhere (the user data folder,
# or data/ beside the executable in portable mode) and are never touched. Remove with uninstall.sh.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
share=${XDG_DATA_HOME:-$HOME/.local/share}
dest=${1:-$share/loradesk}
case $dest in /*) ;; *) dest=$(pwd)/$dest ;; esac
if [ ! -x "$here/loradesk" ] || [ ! -d "$here/_internal" ]; then
    echo "install.sh: run it from the unpacked LoRA Desk folder (no loradesk executable in $here)" >&2
    exit 1
fi
if [ "$here" != "$dest" ]; then
    if [ -e "$dest" ] && [ ! -x "$dest/loradesk" ] && [ -n "$(ls -A "$dest" 2>/dev/null || echo file)" ]; then
        echo "install.sh: $dest exists and is not a LoRA Desk install; choose another folder" >&2
        exit 1
    fi
    mkdir -p "$dest"
    # An earlier version's program files go; a portable data/ folder and marker stay.
    rm -rf "$dest/_internal" "$dest/loradesk"
    (cd "$here" && tar -cf - --exclude=./data --exclude=./portable .) | (cd "$dest" && tar -xf -)
fi
mkdir -p "$share/applications" "$HOME/.local/bin"
sed -e "s|^Exec=.*|Exec=\"$dest/loradesk\" %f|" -e "s|^Icon=.*|Icon=$dest/_internal/resources/icons/loradesk.png|" \
    "$dest/_internal/resources/loradesk.desktop" > "$share/applications/loradesk.desktop"
ln -sf "$dest/loradesk" "$HOME/.local/bin/loradesk"
command -v update-desktop-database >/dev/null && update-desktop-database -q "$share/applications" || true
echo "LoRA Desk installed in $dest"
echo "Start it from the applications menu, or run: $dest/loradesk   (check it with: $dest/loradesk self-test)"
