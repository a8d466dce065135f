"""``python -m pcaptools``: the same command line as the ``pcaptools`` script."""

from pcaptools.cli import main

raise SystemExit(main())
