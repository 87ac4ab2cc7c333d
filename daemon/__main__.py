"""``python -m daemon`` is the ``storesync`` command (for hosts without the console script)."""

from daemon.cli import main

raise SystemExit(main())
