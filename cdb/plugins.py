"""The plug-ins the application installs, once, before anything builds a codec.

Week 4 (docs/migration-runbook.md): the migration goes by deleting ``migration/``,
``cdb/cli/cutover.py`` and the one marked line below; nothing else changes, and the
flag defaults then resolve to the Pydantic path with the strict profile.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field

__all__ = ["PLUGINS", "Plugin", "install_plugins", "plugin_commands"]


@dataclass(frozen=True, slots=True)
class Plugin:
    """An optional package: its module (with an ``install()``) and the ``cdb`` sub-commands
    it brings, by name -> ``module:attribute`` of a typer app."""

    module: str
    commands: dict[str, str] = field(default_factory=dict)


PLUGINS: tuple[Plugin, ...] = (
    Plugin("migration", {"cutover": "cdb.cli.cutover:app"}),  # week 4: delete this line with migration/
)
"""The installed plug-ins, in installation order."""

_INSTALLED: set[str] = set()


def install_plugins() -> None:
    """Call each plug-in's ``install()`` once per process."""
    for plugin in PLUGINS:
        if plugin.module not in _INSTALLED:
            importlib.import_module(plugin.module).install()
            _INSTALLED.add(plugin.module)


def plugin_commands() -> dict[str, str]:
    """Every sub-command the installed plug-ins add to ``cdb``: name -> ``module:attribute``."""
    return {name: target for plugin in PLUGINS for name, target in plugin.commands.items()}
