"""Websocket routes.

OCPP chargers send no Origin header, so the OCPP route is not wrapped in
AllowedHostsOriginValidator; browser websockets (none yet) must be.
"""

from django.urls import re_path

from apps.ocpp.consumer import OcppConsumer

websocket_urlpatterns: list = [
    # Any host name: installers configure one URL template, ws(s)://<host>/ocpp/<chargePointId>.
    # Ids the platform cannot register (too long, a NUL...) are refused by the consumer's handshake check.
    re_path(r"^ocpp/(?P<charge_point_id>[^/]*)/?$", OcppConsumer.as_asgi()),
    # Anything else is refused the same way (403, recorded), not left to the router's 500.
    re_path(r"", OcppConsumer.as_asgi()),
]
