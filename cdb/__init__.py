"""The cdb application: the ``cdb`` command line and the service launcher, on top of the library.

The command line is :mod:`cdb.cli` (console script ``cdb`` -> ``cdb.cli.main:main``); the
plug-ins it installs at start-up are listed in :mod:`cdb.plugins`.
"""

from cdb.plugins import PLUGINS, Plugin, install_plugins, plugin_commands

__all__ = ["PLUGINS", "Plugin", "install_plugins", "plugin_commands"]
