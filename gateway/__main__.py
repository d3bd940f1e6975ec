"""`python -m gateway` is the same as the `mcrm` command."""

from gateway.cli import main

raise SystemExit(main())
