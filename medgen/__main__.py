"""Entry point for ``python -m medgen``."""

from medgen.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
