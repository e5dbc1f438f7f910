"""A small Django app configured in code, one module for settings, views and URLs, no
database: ``prefork serve tests.apps.django_app:application`` (routes as in wsgi_plain)."""

from __future__ import annotations

import django
from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.urls import path

from tests.apps.wsgi_plain import digest

if not settings.configured:
    settings.configure(
        DEBUG=False,
        SECRET_KEY="only-for-tests",
        ALLOWED_HOSTS=["*"],
        ROOT_URLCONF=__name__,
        INSTALLED_APPS=[],
        MIDDLEWARE=[],
        DATABASES={},
        USE_TZ=True,
    )
    django.setup()


def hello(request: HttpRequest) -> HttpResponse:
    return HttpResponse(b"hello\n", content_type="text/plain")


def echo(request: HttpRequest) -> HttpResponse:
    if request.method != "POST":
        return HttpResponse(status=405)
    return HttpResponse(digest(request.body), content_type="text/plain")


urlpatterns = [path("hello", hello), path("echo", echo)]

from django.core.wsgi import get_wsgi_application  # noqa: E402  (after settings.configure)

application = get_wsgi_application()
