"""`python -m engine` runs the same CLI as the `tidelog` console script."""

from engine.cli import main

raise SystemExit(main())
