"""Websocket routes.

OCPP chargers send no Origin header, so the OCPP route is not wrapped in
AllowedHostsOriginValidator; browser websockets (none yet) must be.
"""

from django.urls import re_path

from apps.ocpp.consumer import OcppConsumer

websocket_urlpatterns: list = [
    # Any host name: installers configure one URL template, ws(s)://<host>/ocpp/<chargePointId>.
    re_path(r"^ocpp/(?P<charge_point_id>[^/]{1,64})/?$", OcppConsumer.as_asgi()),
]
