"""``python -m agent`` is the ``umps-agent`` command."""

from agent.cli import main

raise SystemExit(main())
