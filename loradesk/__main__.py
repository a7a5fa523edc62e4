"""``python -m loradesk``: same as the ``loradesk`` command."""

from loradesk.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
