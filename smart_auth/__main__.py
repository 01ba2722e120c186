"""`python -m smart_auth ...`: see `smart_auth.cli`."""

from smart_auth.cli import main

raise SystemExit(main())
