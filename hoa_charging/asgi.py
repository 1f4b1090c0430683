"""ASGI entry point: HTTP through Django, websockets through Channels.

    daphne hoa_charging.asgi:application
"""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "hoa_charging.settings")
django_asgi_app = get_asgi_application()

from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402

from hoa_charging import websocket_server  # noqa: E402
from hoa_charging.routing import websocket_urlpatterns  # noqa: E402

websocket_server.apply()

application = ProtocolTypeRouter(
    {
        "http": django_asgi_app,
        # OCPP chargers send no Origin header, so the OCPP route is not wrapped in
        # AllowedHostsOriginValidator; browser websockets are (see routing.py).
        "websocket": URLRouter(websocket_urlpatterns),
    }
)
