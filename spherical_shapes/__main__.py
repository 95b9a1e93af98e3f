"""``python -m spherical_shapes`` = the ``spherical-shapes`` console script."""

from spherical_shapes.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
