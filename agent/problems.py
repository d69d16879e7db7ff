"""The one error of a file or message a person wrote: every problem at once, by key path.

The agent's configuration (:class:`agent.config.ConfigError`) and the rig's
scenario files (``hil.scenario.ScenarioError``) are judged the same way: each
problem is a ``(key path, message)`` pair, such as ``("gnss.baudrte",
"unknown key (did you mean `baudrate`?)")``, and all of them are reported
together so the author fixes the file in one go. This module is the bottom of
the package: it imports nothing of the agent.
"""

from __future__ import annotations


class ProblemsError(Exception):
    """``source`` is unusable; ``problems`` lists ``(key path, message)``, ``""`` for the file itself."""

    def __init__(self, source: str, problems: list[tuple[str, str]]):
        self.source = source
        self.problems = problems
        lines = "\n".join(f"  {loc or '<file>'}: {msg}" for loc, msg in problems)
        super().__init__(f"{source}: {len(problems)} problem(s)\n{lines}")
