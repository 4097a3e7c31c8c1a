"""The plugin platform: discovery, declared settings, scopes, the plugin host and reloads.

- :mod:`.discovery`: built-in plugins, the ``mailmax.plugins`` entry points, the plugins
  directory;
- :mod:`.settings`: declared settings schemas and their validation;
- :mod:`.scopes`: system / listening address / domain / user layering, backed by the directory;
- :mod:`.host`: what plugins may use of the running server (the ``host`` hook argument);
- :mod:`.reload`: building a whole plugin set, the unit a reload swaps in atomically.
"""
