"""Settings for every environment, read from the environment (django-environ).

The embedded defaults (SQLite file, Redis on loopback) let a fresh checkout run with nothing
configured; production sets each variable explicitly.
"""

from datetime import timedelta
from pathlib import Path

import environ
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent.parent

env = environ.Env()
environ.Env.read_env(BASE_DIR / ".env", overwrite=False)

DEBUG = env.bool("DEBUG", default=False)

if DEBUG:
    SECRET_KEY = env("SECRET_KEY", default="dev-only-insecure-key-never-use-in-production")
else:
    SECRET_KEY = env("SECRET_KEY")

ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["localhost", "127.0.0.1", "[::1]"])
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "knox",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "channels",
    "django_htmx",
    "agents",
    "tickets",
    "dispatch",
]

MIDDLEWARE = [
    # First: bounds the requests that run at once (see its docstring).
    "dispatch.middleware.RequestSlotsMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
    # Last, and synchronous only: the chain above it runs in one thread (see its docstring).
    "dispatch.exceptions.DatabaseUnavailableMiddleware",
]

# Requests a web process runs at once; the others wait their turn (dispatch.middleware).
WEB_REQUEST_SLOTS = env.int("WEB_REQUEST_SLOTS", default=4)
if WEB_REQUEST_SLOTS < 1:
    raise ImproperlyConfigured("WEB_REQUEST_SLOTS must be at least 1: with none, no request runs.")

ROOT_URLCONF = "dispatch.urls"
ASGI_APPLICATION = "dispatch.asgi.application"

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
            ],
        },
    },
]

DATABASES = {"default": env.db("DATABASE_URL", default=f"sqlite:///{BASE_DIR / 'db.sqlite3'}")}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # The web server and the Celery worker write to one file: take the write lock when a
    # transaction begins (so a routing step never fails half-way on an upgrade from a read
    # lock) and wait for it instead of failing with "database is locked".
    DATABASES["default"]["OPTIONS"] = {
        "transaction_mode": "IMMEDIATE",
        "timeout": 20,
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
    }
elif DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql":
    # Each process keeps its PostgreSQL connections in a pool: opening one costs ~5 ms here
    # (a server process forked per connection), paid otherwise by every request and every
    # routing task. The pool is per process; size the server's max_connections for
    # processes × DATABASE_POOL_MAX_SIZE. A connection is checked as it leaves the pool (one
    # round trip, ~0.1 ms), so none broken by a database restart is handed out; and a request
    # waits at most 2 s for one, so that with the database down the API answers 503 in 2 s.
    DATABASES["default"]["OPTIONS"] = {
        "pool": {
            "min_size": 1,
            "max_size": env.int("DATABASE_POOL_MAX_SIZE", default=10),
            "timeout": 2,
        }
    }
    DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
DATABASES["default"]["ATOMIC_REQUESTS"] = False
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = env.path("STATIC_ROOT", default=BASE_DIR / "staticfiles")

LOGIN_URL = "/accounts/login/"
LOGIN_REDIRECT_URL = "/"
LOGOUT_REDIRECT_URL = "/accounts/login/"

# A request body over this size is refused (the contract's 1 MiB escalation limit).
DATA_UPLOAD_MAX_MEMORY_SIZE = 1024 * 1024

REDIS_URL = env("REDIS_URL", default="redis://127.0.0.1:6379/0")

# Token log-ins per client address (DRF rate syntax), against password guessing.
AUTH_TOKEN_LOGIN_RATE = env("AUTH_TOKEN_LOGIN_RATE", default="10/minute")

# Agent API tokens (django-rest-knox): the database keeps only a SHA-512 digest, so a token is
# shown once, at log-in. Each log-in issues its own token; one lives AGENT_TOKEN_TTL_HOURS after
# its last use (every authenticated request or websocket connect extends it), and then the
# client logs in again.
REST_KNOX = {
    "AUTH_HEADER_PREFIX": "Token",
    "TOKEN_TTL": timedelta(hours=env.int("AGENT_TOKEN_TTL_HOURS", default=24)),
    "AUTO_REFRESH": True,
}

# Shared by every process (the bot API's rate limits count across all web processes). A short
# time-out: a slow Redis must not hold up requests (the throttle fails open, see throttling.py).
CACHES = {
    "default": {
        # One pool and one client per process, not one per request (see dispatch.cache).
        "BACKEND": "dispatch.cache.RedisCache",
        "LOCATION": REDIS_URL,
        "KEY_PREFIX": "gig-dispatch",
        "OPTIONS": {"socket_connect_timeout": 1, "socket_timeout": 1},
    }
}

CHANNEL_LAYERS = {
    "default": {
        "BACKEND": "channels_redis.core.RedisChannelLayer",
        "CONFIG": {
            "hosts": [
                {
                    "address": REDIS_URL,
                    # redis-py's 5 s default equals channels-redis' blocking-pop timeout and
                    # kills idle consumers; the pool default of 100 connections refuses a burst
                    # of sockets connecting at once.
                    "socket_timeout": None,
                    "max_connections": 2000,
                }
            ],
            # Sized from STACK_NOTES.md (one ASGI process delivers at most ~275-300 frames/s).
            # Delivery is at most once either way: clients resync with `hello` on connect and
            # when a stale connection revives; these keep that a rare repair, not the rule.
            #
            # capacity: the frames waiting for one server process (all of its sockets share one
            # list); past it group_send drops them silently. 5,000 is ~17 s of that process's
            # full speed: room for the largest burst here, a presence sweep taking a dead
            # process's agents offline at once (a status, revocations and re-routing for each,
            # every one of them also sent to every board socket), which the default of 100
            # would cut short, as it did 1,063 of 2,000 frames at full speed.
            "capacity": 5000,
            # expiry: a frame unread after 60 s is dropped. That is longer than a full list
            # takes to drain (~17 s), so a live process never loses a frame to it; a process
            # stalled this long has not read its sockets' heartbeats either (the default
            # time-out is 60 s), so they have stopped counting and resync when they revive.
            "expiry": 60,
            # group_expiry: a member that has not re-joined for 15 minutes leaves its group.
            # Sockets re-join on every heartbeat, and a connection counts only while it
            # heartbeats within the policy's time-out (10 minutes at most), so every counted
            # socket is a member; the channels of a server process that died without its
            # disconnects leave within 15 minutes instead of the default day, and a tab open for
            # more than a day does not silently stop hearing (uvicorn, unlike daphne, does not
            # close a socket at the group expiry).
            "group_expiry": 15 * 60,
        },
    }
}

CELERY_BROKER_URL = env("CELERY_BROKER_URL", default=REDIS_URL)
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_TIME_LIMIT = 60
CELERY_TASK_SOFT_TIME_LIMIT = 50
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
# A dead broker must not hold up the request that enqueues (the web process sends its tasks
# after commit, inside the request): Celery retries a failed publish, and redis-py waits forever
# by default on a broker that accepts connections but never answers. So: 1 s to connect (a
# connect on the same network takes well under a millisecond), 2 s for any reply (a publish
# takes a fraction of a millisecond; longer than the 1 s BRPOP with which an idle worker polls,
# so a poll never times out), and one retry on a fresh connection, for a blip such as a pooled
# connection that Redis closed. A request is held at most about 4 s on an unresponsive broker,
# a few milliseconds on one that refuses connections; the task is then logged as lost (see
# dispatch.celery.enqueue_on_commit) and the sweep does its work.
CELERY_BROKER_TRANSPORT_OPTIONS = {
    "visibility_timeout": 3600,
    "socket_connect_timeout": 1,
    "socket_timeout": 2,
}
CELERY_TASK_PUBLISH_RETRY_POLICY = {
    "max_retries": 1,
    "interval_start": 0,
    "interval_step": 0.2,
    "interval_max": 0.2,
}
CELERY_TASK_ROUTES = {
    "dispatch.*": {"queue": "routing"},
    "tickets.*": {"queue": "webhooks"},
}
CELERY_BEAT_SCHEDULE = {
    "sweep": {"task": "dispatch.sweep", "schedule": env.float("SWEEP_INTERVAL_SECONDS", 3.0)},
    # Presence: stale connections, the offline grace period and the reconnect window are kept
    # to within one interval; the same knob as the routing sweep's.
    "presence-sweep": {
        "task": "dispatch.presence_sweep",
        "schedule": env.float("SWEEP_INTERVAL_SECONDS", 3.0),
    },
    # Re-sends webhook deliveries that are due but lost their task (broker down, worker gone).
    "resend-due-webhooks": {
        "task": "tickets.resend_due_webhooks",
        "schedule": env.float("WEBHOOK_RESEND_INTERVAL_SECONDS", 10.0),
    },
    # The live board's history charts: queue depth and agents online, one sample a minute.
    "board-sample": {
        "task": "dispatch.board_sample",
        "schedule": env.float("BOARD_SAMPLE_INTERVAL_SECONDS", 60.0),
    },
}

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "rest_framework.authentication.SessionAuthentication",
        "agents.middleware.AgentTokenAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": ["tickets.validators.JSONBodyParser"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "EXCEPTION_HANDLER": "dispatch.exceptions.api_exception_handler",
    "UNAUTHENTICATED_USER": "django.contrib.auth.models.AnonymousUser",
}

SPECTACULAR_SETTINGS = {
    "TITLE": "gig-dispatch API",
    "DESCRIPTION": "Escalate AI-bot conversations to online freelance support agents.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    # The interactive docs' assets are served from this deployment, not from a CDN.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    # Tickets and agents both have a `status`; each gets its own named enum (the values of
    # Ticket.Status and Agent.Status, which the settings cannot import).
    "ENUM_NAME_OVERRIDES": {
        "TicketStatusEnum": ["queued", "offered", "assigned", "resolved", "cancelled"],
        "AgentStatusEnum": ["offline", "available", "away"],
    },
}

EMAIL_BACKEND = env("EMAIL_BACKEND", default="django.core.mail.backends.console.EmailBackend")

WEBHOOK_TIMEOUT_SECONDS = env.float("WEBHOOK_TIMEOUT_SECONDS", 10.0)
# Whether a callback URL may name a private, loopback, link-local or otherwise non-public
# address. On here, so local development and the tests can receive webhooks on loopback;
# production settings turn it off (see tickets.validators).
WEBHOOK_ALLOW_PRIVATE_ADDRESSES = env.bool("WEBHOOK_ALLOW_PRIVATE_ADDRESSES", default=True)

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env("LOG_LEVEL", default="INFO")},
    # One line per task received and succeeded (the sweep runs every few seconds) would bury
    # what matters; failures are still logged at WARNING and above.
    "loggers": {
        name: {"level": "WARNING"}
        for name in ("celery.app.trace", "celery.worker.strategy", "celery.beat")
    },
}
CELERY_WORKER_HIJACK_ROOT_LOGGER = False
