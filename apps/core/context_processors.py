from django.conf import settings


def platform(request):
    return {"platform_name": "HOA Charging", "condominium": getattr(request, "tenant", None), "debug": settings.DEBUG}
