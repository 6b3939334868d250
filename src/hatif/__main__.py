"""`python -m hatif`: the `hatif` command (for a server process started from a test or a service manager)."""

from .cli import main

raise SystemExit(main())
