"""The plugin platform: discovery, declared settings, scopes, the plugin host and reloads.

- :mod:`.discovery`: built-in plugins, the ``mailmax.plugins`` entry points, the plugins
  directory;
- :mod:`.settings`: declared settings schemas and their validation;
- :mod:`.scopes`: system / listening address / domain / user layering, backed by the directory;
- :mod:`.host`: what plugins may use of the running server (the ``host`` hook argument);
- :mod:`.reload`: building a whole plugin set, the unit a reload swaps in atomically;
- :mod:`.storage`: plugin-owned data (the key-value store, a plugin's own tables);
- :mod:`.schedule`: plugins' periodic tasks on the reactor's clock;
- :mod:`.services` and :mod:`.metrics`: the host's DNS, sending, logging and metrics;
- :mod:`.lifecycle`: a set's tables and tasks brought up at start and reload, the old set's
  taken down.
"""
