"""``python -m raekit.cli``: the ``raekit`` command without its console script."""

from . import main

raise SystemExit(main())
