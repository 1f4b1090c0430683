"""Settings, read from the environment. A missing or bad value fails at start-up.

Every variable is documented in README.md ("Configuration"). When DATABASE_URL
and REDIS_URL are not set, the values that `python3 dev.py` wrote to
.local/services.env are used (never with HOA_ENV=production), so `python manage.py ...` works after the demo.
"""

from __future__ import annotations

import os
from datetime import time
from pathlib import Path
from urllib.parse import urlsplit

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent


def _load_services_env() -> None:
    # Never in production: what the demo wrote (its local services, its localstripe keys) must not fill in a
    # server's missing settings.
    if os.environ.get("HOA_ENV") == "production":
        return
    path = Path(os.environ.get("HOA_DATA_DIR", BASE_DIR / ".local")) / "services.env"
    if not path.exists():
        return
    for line in path.read_text().splitlines():
        key, sep, value = line.partition("=")
        if sep and key.strip() and not key.startswith("#"):
            os.environ.setdefault(key.strip(), value.strip())


_load_services_env()


def env_str(name: str, default: str | None = None) -> str:
    value = os.environ.get(name, default)
    if value is None:
        raise ImproperlyConfigured(f"environment variable {name} is required")
    return value


def env_bool(name: str, default: bool) -> bool:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    lowered = raw.strip().lower()
    if lowered in {"1", "true", "yes", "on"}:
        return True
    if lowered in {"0", "false", "no", "off"}:
        return False
    raise ImproperlyConfigured(f"environment variable {name} must be true or false, not {raw!r}")


def env_int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise ImproperlyConfigured(f"environment variable {name} must be an integer, not {raw!r}") from None


def env_list(name: str, default: str) -> list[str]:
    return [item.strip() for item in os.environ.get(name, default).split(",") if item.strip()]


# No default: a process started without HOA_ENV (a bare `daphne`, `celery` or
# `manage.py runserver` on a server) must not quietly run with DEBUG and the
# development key below, with which anyone could sign sessions and hand-off tickets.
# `python3 dev.py` sets HOA_ENV=development for everything it starts.
HOA_ENV = os.environ.get("HOA_ENV", "")
if not HOA_ENV:
    raise ImproperlyConfigured(
        "HOA_ENV is not set. Set HOA_ENV=production (with DJANGO_SECRET_KEY and ALLOWED_HOSTS) on a server, "
        "or HOA_ENV=development on your own machine; `python3 dev.py demo|test|manage` sets it for you."
    )
if HOA_ENV not in {"development", "production"}:
    raise ImproperlyConfigured(f"HOA_ENV must be development or production, not {HOA_ENV!r}")
PRODUCTION = HOA_ENV == "production"

# Committed to the repository, hence public: only ever used with HOA_ENV=development.
DEVELOPMENT_SECRET_KEY = "development-only-secret-key-do-not-use-in-production-0123456789"
if PRODUCTION:
    SECRET_KEY = env_str("DJANGO_SECRET_KEY")
    if len(SECRET_KEY) < 50:
        raise ImproperlyConfigured("DJANGO_SECRET_KEY must be at least 50 characters in production")
    if SECRET_KEY == DEVELOPMENT_SECRET_KEY:
        raise ImproperlyConfigured("DJANGO_SECRET_KEY is the public development key; generate a secret one")
else:
    SECRET_KEY = env_str("DJANGO_SECRET_KEY", DEVELOPMENT_SECRET_KEY)

DEBUG = env_bool("DJANGO_DEBUG", not PRODUCTION)
ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", "" if PRODUCTION else ".localhost,localhost,127.0.0.1,testserver")
if PRODUCTION and not ALLOWED_HOSTS:
    raise ImproperlyConfigured("ALLOWED_HOSTS is required in production")
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", "")

# The host name of the company-wide site (login, the manager's list of buildings).
# Every other host is looked up among the condominiums' domains.
PUBLIC_HOST = env_str("PUBLIC_HOST", "localhost")
# The company site's address as people reach it. Links in e-mails (invitations) use its
# scheme and port, on the company site's host or on a building's own host.
PUBLIC_URL = env_str(
    "PUBLIC_URL", f"https://{PUBLIC_HOST}" if PRODUCTION else f"http://{PUBLIC_HOST}:{env_str('HOA_PORT', '8000')}"
)
_public_url = urlsplit(PUBLIC_URL)
try:
    _public_url.port  # noqa: B018 - raises ValueError for a bad port
except ValueError:
    raise ImproperlyConfigured(f"PUBLIC_URL has a bad port: {PUBLIC_URL!r}") from None
if (
    _public_url.scheme not in {"http", "https"}
    or _public_url.hostname != PUBLIC_HOST.lower()
    or _public_url.path not in {"", "/"}
):
    raise ImproperlyConfigured(
        f"PUBLIC_URL must be http(s)://{PUBLIC_HOST}[:port] (the company site, PUBLIC_HOST), not {PUBLIC_URL!r}"
    )

# --- applications -------------------------------------------------------------------

SHARED_APPS = [
    "django_tenants",
    "daphne",
    "apps.tenancy",
    "apps.accounts",
    "django.contrib.contenttypes",
    "django.contrib.auth",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django.contrib.admin",
    "django.contrib.humanize",
    "axes",
    "django_celery_beat",
    "rest_framework",
    "rest_framework.authtoken",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "channels",
    "apps.core",
    "apps.console",
    "apps.portal",
    "apps.api",
    "apps.commissioning",
    "apps.audit",
    "apps.simulator",
    "apps.webhooks",
]
TENANT_APPS = [
    "django.contrib.contenttypes",
    "apps.buildings",
    "apps.electrical",
    "apps.charging",
    "apps.billing",
    "apps.ocpp",
    "apps.alerts",
    "apps.statements",
    "apps.payments",
    "apps.loadbalancing",
    "apps.reconciliation",
    "apps.visitors",
]
INSTALLED_APPS = list(SHARED_APPS) + [app for app in TENANT_APPS if app not in SHARED_APPS]

TENANT_MODEL = "tenancy.Condominium"
TENANT_DOMAIN_MODEL = "tenancy.Domain"
PUBLIC_SCHEMA_URLCONF = "hoa_charging.urls_public"
ROOT_URLCONF = "hoa_charging.urls_tenants"
SHOW_PUBLIC_IF_NO_TENANT_FOUND = True
# django-tenants sends `SET search_path` only when the schema changed (entering a schema, a new connection, a
# rollback), not before every query: every query was two round trips, and an OCPP reconnect storm's database
# thread and a balancing run spent half of theirs on it (docs/benchmarks.md). The wrapper remembers the path
# it set; apps.core.tenants.forget_search_path (connection_created) makes it forget it on every new
# connection, however the connection was replaced (without it, a connection dropped under the wrapper ran
# its queries in the public schema: tests/core/test_search_path.py).
TENANT_LIMIT_SET_CALLS = True
DATABASE_ROUTERS = ["django_tenants.routers.TenantSyncRouter"]

MIDDLEWARE = [
    "django_tenants.middleware.main.TenantMainMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.locale.LocaleMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "apps.accounts.middleware.PreferredLanguageMiddleware",  # after the user is known; apps/accounts/middleware.py
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "axes.middleware.AxesMiddleware",
]

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "apps.core.context_processors.platform",
            ],
        },
    },
]

WSGI_APPLICATION = None
ASGI_APPLICATION = "hoa_charging.asgi.application"

# --- data ---------------------------------------------------------------------------

DATABASE_URL = env_str("DATABASE_URL", "")
if not DATABASE_URL:
    raise ImproperlyConfigured(
        "DATABASE_URL is not set. Run `python3 dev.py demo` (it finds or starts PostgreSQL) "
        "or set DATABASE_URL=postgres://user@host:5432/hoa_charging"
    )
DATABASES = {"default": dj_database_url.parse(DATABASE_URL, conn_max_age=env_int("DATABASE_CONN_MAX_AGE", 0))}
DATABASES["default"]["ENGINE"] = "django_tenants.postgresql_backend"
if os.environ.get("TEST_DATABASE_NAME"):
    DATABASES["default"]["TEST"] = {"NAME": os.environ["TEST_DATABASE_NAME"]}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

REDIS_URL = env_str("REDIS_URL", "")
if not REDIS_URL:
    raise ImproperlyConfigured("REDIS_URL is not set (e.g. redis://127.0.0.1:6379/0)")

CHANNEL_LAYERS = {
    "default": {
        "BACKEND": "channels_redis.core.RedisChannelLayer",
        # channels-redis blocks 5 s on BZPOPMIN; redis-py >= 6 gives up reading after 5 s
        # by default, which would break every idle consumer's receive loop.
        # The pool raises (MaxConnectionsError) rather than waits once every connection is in use; redis-py
        # allows 100, which a reconnect storm exceeded (thousands of handshakes failed in group_add).
        # Redis itself takes 10,000 clients.
        # driver_info None: no CLIENT SETINFO, and no reading of redis-py's package metadata from disk for each
        # new connection (redis-py 8 does both; 3 % of the event loop in a reconnect storm, docs/benchmarks.md).
        "CONFIG": {"hosts": [{"address": REDIS_URL, "socket_timeout": 30,
                              "max_connections": env_int("CHANNEL_LAYER_MAX_CONNECTIONS", 1000),
                              "driver_info": None}],
                   "prefix": env_str("CHANNEL_LAYER_PREFIX", "hoa")},
    }
}

CACHES = {
    "default": {
        "BACKEND": "django.core.cache.backends.redis.RedisCache",
        "LOCATION": REDIS_URL,
        "KEY_FUNCTION": "django_tenants.cache.make_key",
        "REVERSE_KEY_FUNCTION": "django_tenants.cache.reverse_key",
    }
}

# --- Celery -------------------------------------------------------------------------

CELERY_BROKER_URL = REDIS_URL
CELERY_RESULT_BACKEND = REDIS_URL
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TIMEZONE = "UTC"
CELERY_TASK_ACKS_LATE = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_BEAT_SCHEDULER = "django_celery_beat.schedulers:DatabaseScheduler"
CELERY_TASK_ALWAYS_EAGER = False
# Three queues, each with its own workers (Procfile), so that no kind of work waits behind another: the
# balancer's runs (CPU, a few ms to a few hundred each: a rise must not wait behind a month's PDFs), the calls
# to chargers (mostly waiting for their answers over the network) and the rest (billing, statements, e-mail,
# payments, watchdogs). Every task not named here goes to "celery"; a single worker for everything listens to
# all three (-Q celery,balancing,chargers, as the tests run it). Declared, so that a purge empties all three.
CELERY_TASK_DEFAULT_QUEUE = "celery"
CELERY_TASK_ROUTES = {
    "apps.loadbalancing.tasks.rebalance_building": {"queue": "balancing"},
    "apps.loadbalancing.tasks.rebalance_buildings": {"queue": "balancing"},
    "apps.loadbalancing.tasks.rebalance_all": {"queue": "balancing"},
    "apps.ocpp.tasks.dispatch_limits": {"queue": "chargers"},
    "apps.ocpp.tasks.dispatch_all_limits": {"queue": "chargers"},
    "apps.ocpp.tasks.sync_local_lists": {"queue": "chargers"},
}
CELERY_TASK_QUEUES = {name: {"routing_key": name} for name in ("celery", "balancing", "chargers")}

# --- OCPP central system (docs/ocpp.md) ----------------------------------------------

OCPP_HEARTBEAT_INTERVAL = env_int("OCPP_HEARTBEAT_INTERVAL", 300)
OCPP_OFFLINE_AFTER_HEARTBEATS = env_int("OCPP_OFFLINE_AFTER_HEARTBEATS", 3)
OCPP_METER_VALUE_SAMPLE_INTERVAL = env_int("OCPP_METER_VALUE_SAMPLE_INTERVAL", 15)
# A boot reads the charger's configuration again when the last reading is older than this (or not as wanted).
OCPP_CONFIGURATION_MAX_AGE_HOURS = env_int("OCPP_CONFIGURATION_MAX_AGE_HOURS", 24)
OCPP_RESPONSE_TIMEOUT = env_int("OCPP_RESPONSE_TIMEOUT", 30)
# Threads (each with its own database connection) that run the chargers' queries in a daphne process
# (apps/ocpp/database.py). One (Channels' own way) makes a reconnect storm wait on each query's round trip in
# turn: on a quiet machine four settled 2,000 chargers in 36-42 s where one took 47-82 s, with the steady
# state's p99 no worse (21-29 ms against 27-38 ms; docs/benchmarks.md, runs AA).
OCPP_DATABASE_THREADS = env_int("OCPP_DATABASE_THREADS", 4)
OCPP_FRAME_RETENTION_DAYS = env_int("OCPP_FRAME_RETENTION_DAYS", 90)
OCPP_STALE_SESSION_HOURS = env_int("OCPP_STALE_SESSION_HOURS", 72)
OCPP_REFUSED_LOG_WINDOW = env_int("OCPP_REFUSED_LOG_WINDOW", 600)
# Per connection: frames per second sustained, and the burst allowed above it; a faster charger is slowed down.
OCPP_MAX_FRAME_RATE = env_int("OCPP_MAX_FRAME_RATE", 50)
OCPP_FRAME_BURST = env_int("OCPP_FRAME_BURST", 300)
# Failed charger passwords before handshakes are refused without checking (per id; per address, where a
# building's chargers may share one), for a back-off that doubles with each further failure.
OCPP_AUTH_FAILURES_PER_ID = env_int("OCPP_AUTH_FAILURES_PER_ID", 5)
OCPP_AUTH_FAILURES_PER_ADDRESS = env_int("OCPP_AUTH_FAILURES_PER_ADDRESS", 50)
OCPP_REFUSED_RETENTION_DAYS = env_int("OCPP_REFUSED_RETENTION_DAYS", 30)
# Admission control per process (apps/ocpp/admission.py): handshakes and boots in progress at once before
# their rate is measured (and at least, after); more once the measured rate finishes them within the budget
# (seconds; 0: the counts only), up to five times the counts.
OCPP_MAX_CONCURRENT_HANDSHAKES = env_int("OCPP_MAX_CONCURRENT_HANDSHAKES", 1000)
OCPP_MAX_CONCURRENT_BOOTS = env_int("OCPP_MAX_CONCURRENT_BOOTS", 500)
OCPP_ADMISSION_BUDGET_S = env_int("OCPP_ADMISSION_BUDGET_S", 10)

# --- load balancing (docs/load-balancing.md) -----------------------------------------

# A live limit is sent with a lease: if the platform falls silent this long, each charger drops to its safe
# floor on its own. The periodic run (every LOADBALANCING_REFRESH_S) renews it every half lease, each building
# at its own renewal times (apps/charging/leases.py).
# Off: nothing sets the chargers' limits but the static profiles (tests of the dispatch drive it by hand).
LOADBALANCING_ENABLED = env_bool("LOADBALANCING_ENABLED", True)
LOADBALANCING_LEASE_S = env_int("LOADBALANCING_LEASE_S", 180)
LOADBALANCING_REFRESH_S = env_int("LOADBALANCING_REFRESH_S", 30)
LOADBALANCING_RUN_RETENTION_DAYS = env_int("LOADBALANCING_RUN_RETENTION_DAYS", 14)
# A renewal comes with half the lease left less one refresh period and the dispatch's delay: a refresh of up to
# a third of the lease leaves a sixth of it (a refresh of half the lease could let the lease run out).
if not 30 <= LOADBALANCING_LEASE_S <= 3600 or not 5 <= LOADBALANCING_REFRESH_S <= LOADBALANCING_LEASE_S // 3:
    raise ImproperlyConfigured(
        "LOADBALANCING_LEASE_S must be 30 to 3600 s, and LOADBALANCING_REFRESH_S 5 s to a third of the lease"
    )
if not 1 <= LOADBALANCING_RUN_RETENTION_DAYS <= 3650:
    raise ImproperlyConfigured("LOADBALANCING_RUN_RETENTION_DAYS must be 1 to 3650")
# For closed-loop simulations only (python manage.py simulate_building --speed N, on a development server):
# the balancer's resident timers (minimum run and pause, need periods, stays; allocator.Parameters.pace) run N
# times faster, so a night played in minutes is balanced as a real night would be. The devices' timers (a car
# following its limit, drop confirmation, staleness, leases) stay in real seconds.
LOADBALANCING_SIMULATION_SPEED = env_int("LOADBALANCING_SIMULATION_SPEED", 1)
if not 1 <= LOADBALANCING_SIMULATION_SPEED <= 3600 or (PRODUCTION and LOADBALANCING_SIMULATION_SPEED != 1):
    raise ImproperlyConfigured("LOADBALANCING_SIMULATION_SPEED must be 1 to 3600, and 1 with HOA_ENV=production")
# The live views (the building console, apps/console, and the resident's, apps/portal): ms between two pushes
# of what changed (each reads the chargers' live state from Redis, no database query), and seconds between two
# checks that the viewer may still see it.
CONSOLE_PUSH_MS = env_int("CONSOLE_PUSH_MS", 1000)
CONSOLE_RECHECK_S = env_int("CONSOLE_RECHECK_S", 30)
if not 100 <= CONSOLE_PUSH_MS <= 60_000 or not 1 <= CONSOLE_RECHECK_S <= 3600:
    raise ImproperlyConfigured("CONSOLE_PUSH_MS must be 100 to 60000 and CONSOLE_RECHECK_S 1 to 3600")
# When a resident has not said when the car must be ready: the building's usual morning, local time (HH:MM).
try:
    LOADBALANCING_DEFAULT_READY_BY = time.fromisoformat(env_str("LOADBALANCING_DEFAULT_READY_BY", "07:00"))
except ValueError:
    raise ImproperlyConfigured("LOADBALANCING_DEFAULT_READY_BY must be a local time HH:MM, e.g. 07:00") from None

# --- site meters (docs/site-meter.md) -------------------------------------------------

# Raw readings are kept this long; their 15-minute peaks and means stay for years.
SITE_METER_RAW_RETENTION_DAYS = env_int("SITE_METER_RAW_RETENTION_DAYS", 14)
if not 1 <= SITE_METER_RAW_RETENTION_DAYS <= 3650:
    raise ImproperlyConfigured(f"SITE_METER_RAW_RETENTION_DAYS must be 1 to 3650, not {SITE_METER_RAW_RETENTION_DAYS}")
# How far ahead of the server's clock a reading's timestamp may be before it is refused.
SITE_METER_FUTURE_TOLERANCE_S = env_int("SITE_METER_FUTURE_TOLERANCE_S", 10)
if not 0 <= SITE_METER_FUTURE_TOLERANCE_S <= 3600:
    raise ImproperlyConfigured(f"SITE_METER_FUTURE_TOLERANCE_S must be 0 to 3600, not {SITE_METER_FUTURE_TOLERANCE_S}")
# A phase current above this many times its rating (or below 0) is refused as implausible.
SITE_METER_IMPLAUSIBLE_FACTOR = env_int("SITE_METER_IMPLAUSIBLE_FACTOR", 2)
if not 1 <= SITE_METER_IMPLAUSIBLE_FACTOR <= 10:
    raise ImproperlyConfigured(f"SITE_METER_IMPLAUSIBLE_FACTOR must be 1 to 10, not {SITE_METER_IMPLAUSIBLE_FACTOR}")
# Wrong tokens before pushes are refused unchecked (per meter id; per address), as for charger passwords.
SITE_METER_AUTH_FAILURES_PER_METER = env_int("SITE_METER_AUTH_FAILURES_PER_METER", 5)
SITE_METER_AUTH_FAILURES_PER_ADDRESS = env_int("SITE_METER_AUTH_FAILURES_PER_ADDRESS", 50)
if SITE_METER_AUTH_FAILURES_PER_METER < 1 or SITE_METER_AUTH_FAILURES_PER_ADDRESS < 1:
    raise ImproperlyConfigured("SITE_METER_AUTH_FAILURES_PER_METER and _PER_ADDRESS must be 1 or more")
# How often the Modbus poller (manage.py poll_site_meters) looks for meters added, changed or removed.
SITE_METER_POLL_RELOAD_S = env_int("SITE_METER_POLL_RELOAD_S", 30)
# --- payments (Stripe; docs/payments.md) -------------------------------------------------

# One Stripe account for the platform. In production the secret key, the publishable key and the
# webhook's signing secret are required. In development they may be left out: `python3 dev.py demo`
# then starts localstripe (a fake Stripe on loopback) and points these at it; without them, anything
# that talks to Stripe refuses with a message saying so (apps/payments/stripe_client.py).
STRIPE_SECRET_KEY = env_str("STRIPE_SECRET_KEY", "")
STRIPE_PUBLISHABLE_KEY = env_str("STRIPE_PUBLISHABLE_KEY", "")
STRIPE_WEBHOOK_SECRET = env_str("STRIPE_WEBHOOK_SECRET", "")
# Where the API is: Stripe itself unless a fake (localstripe) stands in for it in development and tests.
STRIPE_API_BASE = env_str("STRIPE_API_BASE", "https://api.stripe.com").rstrip("/")
# Network retries of one call (each with the same idempotency key, so Stripe performs it once).
STRIPE_MAX_NETWORK_RETRIES = env_int("STRIPE_MAX_NETWORK_RETRIES", 2)
# Seconds a webhook's signature timestamp may be old: an older (replayed) delivery is refused.
STRIPE_WEBHOOK_TOLERANCE = env_int("STRIPE_WEBHOOK_TOLERANCE", 300)


def _check_stripe_settings() -> None:
    configured = [name for name in ("STRIPE_SECRET_KEY", "STRIPE_PUBLISHABLE_KEY", "STRIPE_WEBHOOK_SECRET")
                  if globals()[name]]
    if PRODUCTION and len(configured) < 3:
        raise ImproperlyConfigured(
            "STRIPE_SECRET_KEY, STRIPE_PUBLISHABLE_KEY and STRIPE_WEBHOOK_SECRET are required in production "
            "(the Stripe dashboard: Developers > API keys, and the webhook endpoint's signing secret)")
    if STRIPE_SECRET_KEY and not STRIPE_SECRET_KEY.startswith(("sk_test_", "sk_live_", "rk_test_", "rk_live_")):
        raise ImproperlyConfigured("STRIPE_SECRET_KEY must be a secret or restricted key (sk_... or rk_...)")
    if STRIPE_PUBLISHABLE_KEY and not STRIPE_PUBLISHABLE_KEY.startswith(("pk_test_", "pk_live_")):
        raise ImproperlyConfigured("STRIPE_PUBLISHABLE_KEY must be a publishable key (pk_test_... or pk_live_...)")
    if STRIPE_WEBHOOK_SECRET and not STRIPE_WEBHOOK_SECRET.startswith("whsec_"):
        raise ImproperlyConfigured("STRIPE_WEBHOOK_SECRET must be the endpoint's signing secret (whsec_...)")
    if STRIPE_SECRET_KEY and STRIPE_PUBLISHABLE_KEY and (
        ("_live_" in STRIPE_SECRET_KEY) != ("_live_" in STRIPE_PUBLISHABLE_KEY)
    ):
        raise ImproperlyConfigured("STRIPE_SECRET_KEY and STRIPE_PUBLISHABLE_KEY are of different modes (test/live)")
    base = urlsplit(STRIPE_API_BASE)
    if base.scheme not in {"http", "https"} or not base.hostname or base.path not in {"", "/"}:
        raise ImproperlyConfigured(f"STRIPE_API_BASE must be http(s)://host[:port], not {STRIPE_API_BASE!r}")
    if PRODUCTION and base.scheme != "https":
        raise ImproperlyConfigured("STRIPE_API_BASE must be https in production (a fake Stripe is for development)")
    if PRODUCTION and "_live_" in STRIPE_SECRET_KEY and base.hostname != "api.stripe.com":
        raise ImproperlyConfigured("a live STRIPE_SECRET_KEY goes to https://api.stripe.com only")
    if not 0 <= STRIPE_MAX_NETWORK_RETRIES <= 5:
        raise ImproperlyConfigured(f"STRIPE_MAX_NETWORK_RETRIES must be 0 to 5, not {STRIPE_MAX_NETWORK_RETRIES}")
    if not 10 <= STRIPE_WEBHOOK_TOLERANCE <= 3600:
        raise ImproperlyConfigured(
            f"STRIPE_WEBHOOK_TOLERANCE must be 10 to 3600 seconds, not {STRIPE_WEBHOOK_TOLERANCE}")


_check_stripe_settings()

# --- accounts -----------------------------------------------------------------------

AUTH_USER_MODEL = "accounts.User"
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]
PASSWORD_HASHERS = [
    "django.contrib.auth.hashers.PBKDF2PasswordHasher",
    "apps.tenancy.hashers.ChargerPasswordHasher",
]
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "home"
LOGOUT_REDIRECT_URL = "login"

# Login lockout (apps/accounts/lockout.py): after AXES_FAILURE_LIMIT failures for one
# e-mail address (any case) from one client address, or AXES_ADDRESS_FAILURE_LIMIT
# failures from one client address over all e-mails, further attempts are refused for
# AXES_COOLOFF_MINUTES.
AXES_FAILURE_LIMIT = env_int("AXES_FAILURE_LIMIT", 5)
AXES_ADDRESS_FAILURE_LIMIT = env_int("AXES_ADDRESS_FAILURE_LIMIT", 30)
if AXES_FAILURE_LIMIT < 1 or AXES_ADDRESS_FAILURE_LIMIT < AXES_FAILURE_LIMIT:
    raise ImproperlyConfigured("AXES_FAILURE_LIMIT must be 1 or more, and AXES_ADDRESS_FAILURE_LIMIT at least as much")
AXES_COOLOFF_TIME = env_int("AXES_COOLOFF_MINUTES", 15) / 60
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_USERNAME_FORM_FIELD = "username"
AXES_USERNAME_CALLABLE = "apps.accounts.lockout.username_for_lockout"
AXES_HANDLER = "apps.accounts.lockout.LockoutHandler"
AXES_LOCKOUT_TEMPLATE = "accounts/locked_out.html"
AXES_RESET_ON_SUCCESS = True
AXES_VERBOSE = False
# Reverse proxies in front of daphne; the client's address is read from X-Forwarded-For
# accordingly (docs/deployment.md). django-ipware is not installed, so axes' own
# AXES_IPWARE_PROXY_COUNT would have no effect: our callable reads the header itself.
PROXY_COUNT = env_int("PROXY_COUNT", 0)
if not 0 <= PROXY_COUNT <= 5:
    raise ImproperlyConfigured(f"PROXY_COUNT must be 0 to 5, not {PROXY_COUNT}")
AXES_CLIENT_IP_CALLABLE = "apps.accounts.lockout.client_address"

# How long the link in an invitation to choose a password stays valid (docs/commissioning.md).
INVITATION_VALID_DAYS = env_int("INVITATION_VALID_DAYS", 7)
if not 1 <= INVITATION_VALID_DAYS <= 90:
    raise ImproperlyConfigured(f"INVITATION_VALID_DAYS must be 1 to 90 days, not {INVITATION_VALID_DAYS}")

# Statements: days from issue to due date, and how long after the due date a resident's cards are blocked.
STATEMENT_PAYMENT_TERMS_DAYS = env_int("STATEMENT_PAYMENT_TERMS_DAYS", 15)
if not 0 <= STATEMENT_PAYMENT_TERMS_DAYS <= 90:
    raise ImproperlyConfigured(f"STATEMENT_PAYMENT_TERMS_DAYS must be 0 to 90 days, not {STATEMENT_PAYMENT_TERMS_DAYS}")
# Reminders go out on the day after the due date and then every STATEMENT_REMINDER_EVERY_DAYS; cards are
# blocked STATEMENT_BLOCK_AFTER_DAYS after the due date, and work again as soon as it is paid.
STATEMENT_REMINDER_EVERY_DAYS = env_int("STATEMENT_REMINDER_EVERY_DAYS", 7)
STATEMENT_BLOCK_AFTER_DAYS = env_int("STATEMENT_BLOCK_AFTER_DAYS", 14)
if not 1 <= STATEMENT_REMINDER_EVERY_DAYS <= 60 or not 0 <= STATEMENT_BLOCK_AFTER_DAYS <= 180:
    raise ImproperlyConfigured(
        "STATEMENT_REMINDER_EVERY_DAYS must be 1 to 60 and STATEMENT_BLOCK_AFTER_DAYS 0 to 180 days"
    )

SESSION_COOKIE_AGE = env_int("SESSION_COOKIE_AGE", 14 * 24 * 3600)
SESSION_COOKIE_DOMAIN = os.environ.get("SESSION_COOKIE_DOMAIN") or None

# --- e-mail -------------------------------------------------------------------------

EMAIL_BACKEND = env_str(
    "EMAIL_BACKEND",
    "django.core.mail.backends.smtp.EmailBackend" if PRODUCTION else "django.core.mail.backends.console.EmailBackend",
)
EMAIL_HOST = env_str("EMAIL_HOST", "localhost")
EMAIL_PORT = env_int("EMAIL_PORT", 25)
EMAIL_HOST_USER = env_str("EMAIL_HOST_USER", "")
EMAIL_HOST_PASSWORD = env_str("EMAIL_HOST_PASSWORD", "")
EMAIL_USE_TLS = env_bool("EMAIL_USE_TLS", False)
DEFAULT_FROM_EMAIL = env_str("DEFAULT_FROM_EMAIL", "HOA Charging <no-reply@localhost>")
SERVER_EMAIL = DEFAULT_FROM_EMAIL

# --- internationalisation -----------------------------------------------------------

LANGUAGE_CODE = "en"
LANGUAGES = [("en", "English"), ("es", "Español"), ("fr", "Français")]
LOCALE_PATHS = [BASE_DIR / "locale"]
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

# --- static files -------------------------------------------------------------------

STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "staticfiles"
STATICFILES_DIRS = [BASE_DIR / "static"]
# In development daphne serves static files through WhiteNoise straight from the
# finders; production runs collectstatic into STATIC_ROOT.
WHITENOISE_USE_FINDERS = not PRODUCTION
WHITENOISE_AUTOREFRESH = DEBUG
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"
        if PRODUCTION
        else "django.contrib.staticfiles.storage.StaticFilesStorage"
    },
}

# --- REST framework -----------------------------------------------------------------

REST_FRAMEWORK = {
    # Machines send "Authorization: Token <key>" (manage.py api_token); the browser its session (with CSRF).
    "DEFAULT_AUTHENTICATION_CLASSES": ["rest_framework.authentication.TokenAuthentication",
                                       "rest_framework.authentication.SessionAuthentication"],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "COERCE_DECIMAL_TO_STRING": True,  # amounts and amperes exact, as strings
}
SPECTACULAR_SETTINGS = {
    "TITLE": "HOA Charging API",
    "DESCRIPTION": "A building's chargers, sessions, statements, tariffs and site-meter readings (apps/api).",
    "VERSION": "1",
    # Swagger UI's files come from the drf-spectacular-sidecar package, served by the platform: no CDN.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "SERVE_INCLUDE_SCHEMA": False,
}

# --- security (production) ----------------------------------------------------------

if PRODUCTION:
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", True)
    SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 31536000)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    SECURE_HSTS_PRELOAD = env_bool("SECURE_HSTS_PRELOAD", True)
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
    # OCPP endpoints are plain ws:// behind the TLS proxy as well; the proxy terminates TLS.
    SECURE_REDIRECT_EXEMPT = [r"^ocpp/"]

# --- logging ------------------------------------------------------------------------

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env_str("LOG_LEVEL", "INFO")},
    "loggers": {
        "django.db.backends": {"level": "WARNING"},
        "axes": {"level": "WARNING"},
    },
}
