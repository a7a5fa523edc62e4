#!/bin/sh
# Remove the LoRA Desk install this script sits in, its menu entry and its ~/.local/bin/loradesk link.
# Your runs, models and autosave are kept (the user data folder; in portable mode, data/ here stays).
set -eu
dest=$(cd "$(dirname "$0")" && pwd)
share=${XDG_DATA_HOME:-$HOME/.local/share}
if [ ! -x "$dest/loradesk" ] || [ ! -d "$dest/_internal" ]; then
    echo "uninstall.sh: $dest is not a LoRA Desk install; nothing removed" >&2
    exit 1
fi
entry="$share/applications/loradesk.desktop"
if [ -f "$entry" ] && grep -q "^Exec=\"$dest/loradesk\"" "$entry"; then
    rm -f "$entry"
fi
link="$HOME/.local/bin/loradesk"
if [ -L "$link" ] && [ "$(readlink "$link")" = "$dest/loradesk" ]; then
    rm -f "$link"
fi
rm -rf "$dest/_internal" "$dest/loradesk" "$dest/install.sh" "$dest/uninstall.sh"
if [ -d "$dest/data" ]; then
    echo "LoRA Desk removed; your portable data is kept in $dest/data"
else
    rm -f "$dest/portable"
    rmdir "$dest" 2>/dev/null || true
    echo "LoRA Desk removed from $dest"
fi
