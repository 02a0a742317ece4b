"""`python -m gravityd` is the same as the `gravityd` console script."""

from gravityd.commands.cli import main

raise SystemExit(main())
