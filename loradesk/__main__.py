"""``python -m loradesk``: same as the ``loradesk`` command (and the bundle's entry point)."""

import multiprocessing

from loradesk.cli import main

if __name__ == "__main__":
    # In the bundle, the background worker process starts this same executable: let it run its job instead.
    multiprocessing.freeze_support()
    raise SystemExit(main())
