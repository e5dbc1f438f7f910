"""A Django project with the admin site, configured in code, its SQLite database at
``$DJANGO_ADMIN_DB``: ``prefork serve tests.apps.django_admin:application``.  :func:`prepare`
migrates the database and makes a superuser (run it in a process of its own first)."""

from __future__ import annotations

import os

import django
from django.conf import settings
from django.urls import path

if not settings.configured:
    settings.configure(
        DEBUG=False,
        SECRET_KEY="only-for-tests-" + "x" * 40,
        ALLOWED_HOSTS=["*"],
        ROOT_URLCONF=__name__,
        INSTALLED_APPS=[
            "django.contrib.admin", "django.contrib.auth", "django.contrib.contenttypes",
            "django.contrib.sessions", "django.contrib.messages",
        ],
        MIDDLEWARE=[
            "django.middleware.security.SecurityMiddleware",
            "django.contrib.sessions.middleware.SessionMiddleware",
            "django.middleware.common.CommonMiddleware",
            "django.middleware.csrf.CsrfViewMiddleware",
            "django.contrib.auth.middleware.AuthenticationMiddleware",
            "django.contrib.messages.middleware.MessageMiddleware",
        ],
        TEMPLATES=[{
            "BACKEND": "django.template.backends.django.DjangoTemplates",
            "APP_DIRS": True,
            "OPTIONS": {"context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ]},
        }],
        DATABASES={"default": {"ENGINE": "django.db.backends.sqlite3",
                               "NAME": os.environ.get("DJANGO_ADMIN_DB", ":memory:")}},
        USE_TZ=True,
        STATIC_URL="/static/",
    )
    django.setup()

from django.contrib import admin
from django.core.wsgi import get_wsgi_application

urlpatterns = [path("admin/", admin.site.urls)]
application = get_wsgi_application()


def prepare(user: str, password: str) -> None:
    from django.contrib.auth import get_user_model
    from django.core.management import call_command

    call_command("migrate", verbosity=0, interactive=False)
    get_user_model().objects.create_superuser(user, "admin@example.invalid", password)


if __name__ == "__main__":
    prepare(os.environ["DJANGO_ADMIN_USER"], os.environ["DJANGO_ADMIN_PASSWORD"])
