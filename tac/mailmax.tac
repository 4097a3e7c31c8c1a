"""Example deployment for ``twistd -ny tac/mailmax.tac``.

Set MAILMAX_CONFIG to the config file (default: ./mailmax.toml, e.g. one made by
``mailmax init --data-dir .``).
"""

import os

from twisted.application import service

from mailmax.core.service import make_service

application = service.Application("mailmax")
make_service(os.environ.get("MAILMAX_CONFIG", "mailmax.toml")).setServiceParent(application)
