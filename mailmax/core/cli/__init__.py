"""The ``mailmax`` admin command: set up a system, check its configuration, manage accounts.

``main`` builds the click group; each sub-module adds one command group (``init``, ``config``,
``domain``, ``user``, ``alias``) and prints through the shared renderer in ``output``.
"""
