"""The language a logged-in person chose in their profile wins over the browser's (Accept-Language, which
LocaleMiddleware reads first); with none chosen, the browser's stays."""

from __future__ import annotations

from django.conf import settings
from django.http import HttpRequest
from django.utils import translation


class PreferredLanguageMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response
        self.known = {code for code, _ in settings.LANGUAGES}

    def __call__(self, request: HttpRequest):
        user = getattr(request, "user", None)
        chosen = getattr(user, "preferred_language", "") if getattr(user, "is_authenticated", False) else ""
        if chosen in self.known:
            translation.activate(chosen)
            request.LANGUAGE_CODE = chosen
        return self.get_response(request)
