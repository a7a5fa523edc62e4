"""``python -m loradesk``: same as the ``loradesk`` command."""

import multiprocessing

from loradesk.cli import main

if __name__ == "__main__":
    # In the PyInstaller bundle the worker process (ui/jobs.py) is this executable started again: let
    # multiprocessing take it over before the app starts. A no-op when run from source.
    multiprocessing.freeze_support()
    raise SystemExit(main())
