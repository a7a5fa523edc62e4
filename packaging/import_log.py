"""What the app imports at run time, and what a built bundle carries that nothing imports.

    python packaging/import_log.py record LOG.txt
        opens the window offscreen (with its warm-up imports of the training stack), runs the self-test on
        the built-in model (GGUF conversion, training, reload, generation) and exports a merged model,
        then writes every imported module's name to LOG.txt.
    python packaging/import_log.py compare LOG.txt BUILD_DIR BUNDLE_DIR
        lists, largest first, the top-level packages in the bundle (its PYZ archive plus files under
        _internal) with their size and whether the log imported them: the candidates to exclude.
    python packaging/import_log.py savings BUILD_DIR BUNDLE_DIR TRIMMED_BUILD_DIR TRIMMED_BUNDLE_DIR
        what the trimmed bundle no longer carries, by package or folder, and what stripping saved.

The spec's exclusions come from this list (docs/packaging.md gives the figures).
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path


def record(out: Path) -> None:
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    os.environ["LORADESK_HOME"] = tempfile.mkdtemp(prefix="loradesk-import-log-")
    from PySide6.QtWidgets import QApplication

    from loradesk.ui.app import build_window

    window = build_window([], restore=lambda _info: False)
    app = QApplication.instance()
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:  # the window's warm-up imports the training stack on a worker thread
        app.processEvents()  # (not QtTest's qWait: the log must hold only what the app imports)
        time.sleep(0.05)
        if "transformers.trainer" in sys.modules and time.monotonic() > deadline - 110:
            break
    window.close()

    from loradesk.core.runs import export_merged
    from loradesk.core.selftest import run_self_test

    result = run_self_test(keep=True)
    export_merged(result.run_dir, result.run_dir.parent / "merged")
    out.write_text("\n".join(sorted(sys.modules)) + "\n", encoding="utf-8")
    print(f"{len(sys.modules)} modules imported; written to {out}")


def _top(name: str) -> str:
    return name.split(".")[0].split("/")[0]


def compare(log: Path, build_dir: Path, bundle: Path) -> None:
    from PyInstaller.archive.readers import ZlibArchiveReader

    imported = {line.strip() for line in log.read_text(encoding="utf-8").splitlines() if line.strip()}
    imported_top = {_top(m) for m in imported}
    sizes: dict[str, int] = defaultdict(int)
    unused_modules: dict[str, int] = defaultdict(int)
    for pyz in build_dir.glob("PYZ-*.pyz"):
        for name, entry in ZlibArchiveReader(str(pyz)).toc.items():
            length = entry[2]
            sizes[_top(name)] += length
            if name not in imported:
                unused_modules[name] += length
    internal = bundle / "_internal"
    for path in internal.rglob("*"):
        if path.is_file() and not path.is_symlink():
            sizes[_top(str(path.relative_to(internal)))] += path.stat().st_size
    total = sum(sizes.values())
    print(f"{'package':40} {'MB':>8}  imported")
    for name, size in sorted(sizes.items(), key=lambda kv: -kv[1]):
        if size >= 200_000:
            print(f"{name:40} {size / 1e6:8.1f}  {'yes' if name in imported_top else 'NO'}")
    print(f"{'total':40} {total / 1e6:8.1f}")
    print("\nLargest never-imported modules inside imported packages (compressed bytes in the PYZ):")
    by_sub: dict[str, int] = defaultdict(int)
    for name, size in unused_modules.items():
        parts = name.split(".")
        if parts[0] in imported_top and len(parts) > 1:
            by_sub[".".join(parts[:2])] += size
    for name, size in sorted(by_sub.items(), key=lambda kv: -kv[1])[:25]:
        print(f"  {name:40} {size / 1e6:8.2f} MB")


def _contents(build_dir: Path, bundle: Path) -> dict[str, int]:
    """Every PYZ module (``pyz:name``, compressed size) and every file under _internal, with sizes."""
    from PyInstaller.archive.readers import ZlibArchiveReader

    out: dict[str, int] = {}
    for pyz in build_dir.glob("PYZ-*.pyz"):
        for name, entry in ZlibArchiveReader(str(pyz)).toc.items():
            out[f"pyz:{name}"] = entry[2]
    internal = bundle / "_internal"
    for path in internal.rglob("*"):
        if path.is_file() and not path.is_symlink():
            out[str(path.relative_to(internal))] = path.stat().st_size
    return out


def _group(key: str) -> str:
    if key.startswith("pyz:"):
        parts = key[4:].split(".")
        return ".".join(parts[:2]) if parts[0] in ("torch", "pyarrow", "PySide6") else parts[0]
    parts = key.split("/")
    if parts[0] in ("torch", "pyarrow", "PySide6") and len(parts) > 2:
        return "/".join(parts[:3] if parts[1] == "Qt" else parts[:2])
    return parts[0] if len(parts) > 1 else key.split(".so")[0]


def savings(build: Path, bundle: Path, trimmed_build: Path, trimmed_bundle: Path) -> None:
    before, after = _contents(build, bundle), _contents(trimmed_build, trimmed_bundle)
    removed: dict[str, int] = defaultdict(int)
    stripped: dict[str, int] = defaultdict(int)
    for key, size in before.items():
        if key not in after:
            removed[_group(key)] += size
        elif after[key] < size:
            stripped[_group(key)] += size - after[key]
    print(f"before {sum(before.values()) / 1e6:.1f} MB, after {sum(after.values()) / 1e6:.1f} MB")
    print(f"removed {sum(removed.values()) / 1e6:.1f} MB:")
    for name, size in sorted(removed.items(), key=lambda kv: -kv[1]):
        if size >= 50_000:
            print(f"  {name:45} {size / 1e6:8.2f} MB")
    print(f"stripped {sum(stripped.values()) / 1e6:.1f} MB:")
    for name, size in sorted(stripped.items(), key=lambda kv: -kv[1]):
        if size >= 50_000:
            print(f"  {name:45} {size / 1e6:8.2f} MB")


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "record":
        record(Path(sys.argv[2]))
    elif len(sys.argv) == 5 and sys.argv[1] == "compare":
        compare(Path(sys.argv[2]), Path(sys.argv[3]), Path(sys.argv[4]))
    elif len(sys.argv) == 6 and sys.argv[1] == "savings":
        savings(*(Path(a) for a in sys.argv[2:]))
    else:
        raise SystemExit(__doc__)
