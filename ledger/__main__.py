"""``python -m jobledger``: the ``jobledger`` command, as the console script
runs it (an entry point, not part of the face: nothing imports it)."""

from jobledger.cli import main

raise SystemExit(main())
