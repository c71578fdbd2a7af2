"""``python -m jobledger.cli``: the ``jobledger`` command."""

from .main import main

raise SystemExit(main())
