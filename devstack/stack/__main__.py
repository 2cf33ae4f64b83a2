"""``python -m devstack.stack up|down|seed`` (``make stack``, ``make stack-down``)."""

from devstack.stack.cli import main

raise SystemExit(main())
