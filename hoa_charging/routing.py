"""Websocket routes.

OCPP chargers send no Origin header, so the OCPP route is not wrapped in
AllowedHostsOriginValidator; browser websockets are, with the session (AuthMiddlewareStack).
"""

from channels.auth import AuthMiddlewareStack
from channels.security.websocket import AllowedHostsOriginValidator
from django.urls import re_path

from apps.console.consumers import ConsoleConsumer
from apps.ocpp.consumer import OcppConsumer
from apps.portal.consumers import ResidentConsumer

websocket_urlpatterns: list = [
    # The building console's live view (a browser on the building's own host; apps/console/consumers.py).
    re_path(r"^ws/console/$", AllowedHostsOriginValidator(AuthMiddlewareStack(ConsoleConsumer.as_asgi()))),
    # The resident's live view (apps/portal/consumers.py), the same way.
    re_path(r"^ws/me/$", AllowedHostsOriginValidator(AuthMiddlewareStack(ResidentConsumer.as_asgi()))),
    # Any host name: installers configure one URL template, ws(s)://<host>/ocpp/<chargePointId>.
    # Ids the platform cannot register (too long, a NUL...) are refused by the consumer's handshake check.
    re_path(r"^ocpp/(?P<charge_point_id>[^/]*)/?$", OcppConsumer.as_asgi()),
    # Anything else is refused the same way (403, recorded), not left to the router's 500.
    re_path(r"", OcppConsumer.as_asgi()),
]
