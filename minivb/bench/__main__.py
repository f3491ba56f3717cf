"""``python -m minivb.bench``: see :mod:`minivb.bench`."""

from . import main

raise SystemExit(main())
