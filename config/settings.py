"""Switchyard settings: one module, every value from the environment (see README's table).

The defaults run on a laptop with nothing installed: SQLite under var/, local-memory cache, a
filesystem Celery broker and the bundled simulator. Production differs only by environment.
"""

from __future__ import annotations

from pathlib import Path

import environ
from django.core.exceptions import ImproperlyConfigured
from django.utils.csp import CSP

from config import gc_tuning
from config.client_ip import parse_trusted_proxies

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(environ.Env().str("SWITCHYARD_VAR_DIR", default=str(BASE_DIR / "var")))
VAR_DIR.mkdir(parents=True, exist_ok=True)

env = environ.FileAwareEnv()  # any VAR may instead come from a file named by VAR_FILE

DEBUG = env.bool("DEBUG", default=False)
SECRET_KEY = env.str("SECRET_KEY", default="insecure-dev-only" if DEBUG else "")
if not SECRET_KEY:
    raise ImproperlyConfigured("SECRET_KEY is required when DEBUG is off.")
ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["127.0.0.1", "localhost", "[::1]", "testserver"])
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django.contrib.humanize",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",  # Swagger UI served from here, not a CDN (and under the CSP)
    "django_prometheus",
    "django_celery_beat",
    "tenants",
    "providers",
    "routing",
    "usage",
]

MIDDLEWARE = [
    "django_prometheus.middleware.PrometheusBeforeMiddleware",
    "config.request_id.RequestIDMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "django.middleware.csp.ContentSecurityPolicyMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "tenants.middleware.AuditOriginMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_prometheus.middleware.PrometheusAfterMiddleware",
]

ROOT_URLCONF = "config.urls"
ASGI_APPLICATION = "config.asgi.application"

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
                "django.template.context_processors.csp",
                "tenants.context_processors.tenancy",
            ],
        },
    },
]

DATABASES = {
    "default": env.db("DATABASE_URL", default=f"sqlite:///{VAR_DIR / 'db.sqlite3'}"),
}
DATABASES["default"].setdefault("CONN_MAX_AGE", env.int("DATABASE_CONN_MAX_AGE", default=60))
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # WAL lets the web process read while the usage writer inserts; the timeout rides out
    # the short write locks of the worker and beat in the embedded setup.
    DATABASES["default"]["OPTIONS"] = {
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        "timeout": 20,
        "transaction_mode": "IMMEDIATE",
    }
    DATABASES["default"]["CONN_MAX_AGE"] = 0
else:
    # Timeouts: an unreachable database fails a request in seconds instead of holding its
    # worker. A statement limit is opt-in: the web process wants one, but migrations, the
    # retention job and rollup backfills share these settings and may run longer.
    _options = DATABASES["default"].setdefault("OPTIONS", {})
    _options.setdefault("connect_timeout", env.int("DATABASE_CONNECT_TIMEOUT", default=5))
    if _statement_ms := env.int("DATABASE_STATEMENT_TIMEOUT_MS", default=0):
        _options["options"] = f"{_options.get('options', '')} -c statement_timeout={_statement_ms}"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

REDIS_URL = env.str("REDIS_URL", default="")
if REDIS_URL:
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": REDIS_URL,
            # Connection options; without them a Redis that stops answering hangs the page.
            "OPTIONS": {"socket_timeout": 2, "socket_connect_timeout": 2},
            "KEY_PREFIX": "sy",
        }
    }
else:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
LOGIN_URL = "/login/"
LOGIN_REDIRECT_URL = "/"

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "/static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = env.str("STATIC_ROOT", default=str(VAR_DIR / "staticfiles"))
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
}
WHITENOISE_USE_FINDERS = True

# --- Security (production values switch on with SWITCHYARD_TLS) -------------------------
SWITCHYARD_TLS = env.bool("SWITCHYARD_TLS", default=not DEBUG)
# The scheme comes from uvicorn, which believes X-Forwarded-Proto only from its
# --forwarded-allow-ips; Django trusting the header from anyone would let a client claim
# https. Set this only behind a proxy that overwrites the header.
SECURE_PROXY_SSL_HEADER = (
    ("HTTP_X_FORWARDED_PROTO", "https") if env.bool("SWITCHYARD_PROXY_SETS_PROTO", False) else None
)
SECURE_SSL_REDIRECT = env.bool("SECURE_SSL_REDIRECT", default=False)
# Cookies: never readable by scripts (no page script needs them: htmx and forms take the
# CSRF token from the page), Secure over TLS, and with TLS bound to this exact host.
SESSION_COOKIE_SECURE = SWITCHYARD_TLS
CSRF_COOKIE_SECURE = SWITCHYARD_TLS
SESSION_COOKIE_HTTPONLY = True
CSRF_COOKIE_HTTPONLY = True
SESSION_COOKIE_SAMESITE = "Lax"
CSRF_COOKIE_SAMESITE = "Lax"
if SWITCHYARD_TLS:
    SESSION_COOKIE_NAME = "__Host-sessionid"
    CSRF_COOKIE_NAME = "__Host-csrftoken"
# HSTS is sent on HTTPS responses only. Preloading is a promise about the whole domain that
# browsers ship for months: the operator opts in.
SECURE_HSTS_SECONDS = env.int("SECURE_HSTS_SECONDS", default=31536000 if SWITCHYARD_TLS else 0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = SWITCHYARD_TLS
SECURE_HSTS_PRELOAD = env.bool("SECURE_HSTS_PRELOAD", default=False)
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
SECURE_CROSS_ORIGIN_OPENER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"
# Content-Security-Policy (django.middleware.csp): scripts and style sheets from this origin
# only, or carrying the response's nonce; no framing, no plugins, forms post here only.
# Style attributes stay allowed: the pages and the server-drawn SVG charts size and colour
# things with them, and an attribute can neither run script nor select elements to leak.
SECURE_CSP = {
    "default-src": [CSP.SELF],
    "script-src": [CSP.SELF, CSP.NONCE],
    "style-src": [CSP.SELF, CSP.NONCE],
    "style-src-attr": [CSP.UNSAFE_INLINE],
    "img-src": [CSP.SELF, "data:"],
    "font-src": [CSP.SELF],
    "connect-src": [CSP.SELF],
    "object-src": [CSP.NONE],
    "base-uri": [CSP.NONE],
    "form-action": [CSP.SELF],
    "frame-ancestors": [CSP.NONE],
}
# Failed authentications per client address (tenants/throttle.py): past the limit within the
# window, /v1/* and the management API answer 429 to that address (valid key or not) until
# the window ends.
SWITCHYARD_AUTH_FAILURE_LIMIT = env.int("SWITCHYARD_AUTH_FAILURE_LIMIT", default=20)
SWITCHYARD_AUTH_FAILURE_WINDOW_SECONDS = env.int("SWITCHYARD_AUTH_FAILURE_WINDOW_SECONDS", 300)
# The log-in page (and the admin's): failed log-ins per address and per username.
SWITCHYARD_LOGIN_FAILURES_PER_ADDRESS = env.int("SWITCHYARD_LOGIN_FAILURES_PER_ADDRESS", 20)
SWITCHYARD_LOGIN_FAILURES_PER_USERNAME = env.int("SWITCHYARD_LOGIN_FAILURES_PER_USERNAME", 10)
SWITCHYARD_LOGIN_FAILURE_WINDOW_SECONDS = env.int("SWITCHYARD_LOGIN_FAILURE_WINDOW_SECONDS", 900)
# Proxies (addresses or CIDRs) whose X-Forwarded-For is believed when they connect
# (config/client_ip.py). Empty: the connection's peer is the client, whatever headers say.
SWITCHYARD_TRUSTED_PROXIES = env.list("SWITCHYARD_TRUSTED_PROXIES", default=[])
try:
    parse_trusted_proxies(SWITCHYARD_TRUSTED_PROXIES)
except ValueError as exc:
    raise ImproperlyConfigured(f"SWITCHYARD_TRUSTED_PROXIES: {exc}") from exc

# --- Secrets at rest ---------------------------------------------------------------------
# Newest first; older keys still decrypt, so rotation is add, re-encrypt, remove.
SWITCHYARD_ENCRYPTION_KEYS = env.list("SWITCHYARD_ENCRYPTION_KEYS", default=[])
SWITCHYARD_DEV_KEY_FILE = VAR_DIR / "encryption.key"
if not SWITCHYARD_ENCRYPTION_KEYS and not DEBUG and not env.bool("SWITCHYARD_DEV_KEY", False):
    raise ImproperlyConfigured(
        "SWITCHYARD_ENCRYPTION_KEYS is required when DEBUG is off "
        "(generate one: python -c 'from cryptography.fernet import Fernet; "
        "print(Fernet.generate_key().decode())')."
    )

# --- Celery ------------------------------------------------------------------------------
# With no broker configured the embedded default uses kombu's filesystem transport: it needs
# no server and still crosses processes (web, worker, beat).
CELERY_BROKER_URL = env.str("CELERY_BROKER_URL", default=REDIS_URL or "filesystem://")
if CELERY_BROKER_URL == "filesystem://":
    for _sub in ("celery/in", "celery/processed", "celery/control"):
        (VAR_DIR / _sub).mkdir(parents=True, exist_ok=True)
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(VAR_DIR / "celery/in"),
        "data_folder_out": str(VAR_DIR / "celery/in"),
        "processed_folder": str(VAR_DIR / "celery/processed"),
        "store_processed": False,
        # Broadcasts (ping, purge) default to ./control in the working directory.
        "control_folder": str(VAR_DIR / "celery/control"),
    }
else:
    # Seconds before a task a worker took but never acknowledged (the worker died) is given
    # to another worker. Longer than the longest task, or a running task is run twice.
    SWITCHYARD_BROKER_VISIBILITY_TIMEOUT = env.int("SWITCHYARD_BROKER_VISIBILITY_TIMEOUT", 3600)
    CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": SWITCHYARD_BROKER_VISIBILITY_TIMEOUT}
CELERY_RESULT_BACKEND = None
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_TIME_LIMIT = env.int("CELERY_TASK_TIME_LIMIT", default=300)
CELERY_TASK_SOFT_TIME_LIMIT = env.int("CELERY_TASK_SOFT_TIME_LIMIT", default=240)
CELERY_TASK_ALWAYS_EAGER = env.bool("CELERY_TASK_ALWAYS_EAGER", default=False)
# The schedule lives in the database (django-celery-beat) so staff see and change it in the
# admin; config/celery.py's defaults are installed into it when beat starts.
CELERY_BEAT_SCHEDULER = "django_celery_beat.schedulers:DatabaseScheduler"
CELERY_TIMEZONE = "UTC"

# --- Gateway -----------------------------------------------------------------------------
SWITCHYARD_PUBLIC_URL = env.str("SWITCHYARD_PUBLIC_URL", default="http://127.0.0.1:8000")
SWITCHYARD_SIMULATOR_URL = env.str("SWITCHYARD_SIMULATOR_URL", default="http://127.0.0.1:9100")
# Hosts platform providers may reach past the SSRF guard (plain http, private or loopback
# addresses), e.g. an in-house vLLM; staff add more in the admin (upstream host allowances).
# Tenants' own endpoints never may. seed_demo allow-lists the simulator's host itself.
SWITCHYARD_UPSTREAM_ALLOWED_HOSTS = env.list("SWITCHYARD_UPSTREAM_ALLOWED_HOSTS", default=[])
SWITCHYARD_UPSTREAM_CONNECT_TIMEOUT = env.float("SWITCHYARD_UPSTREAM_CONNECT_TIMEOUT", 5.0)
SWITCHYARD_UPSTREAM_READ_TIMEOUT = env.float("SWITCHYARD_UPSTREAM_READ_TIMEOUT", 60.0)
SWITCHYARD_UPSTREAM_TOTAL_TIMEOUT = env.float("SWITCHYARD_UPSTREAM_TOTAL_TIMEOUT", 300.0)
SWITCHYARD_MAX_ATTEMPTS = env.int("SWITCHYARD_MAX_ATTEMPTS", default=3)
SWITCHYARD_RETRY_BACKOFF_MS = env.int("SWITCHYARD_RETRY_BACKOFF_MS", default=50)
SWITCHYARD_COOLDOWN_FAILURES = env.int("SWITCHYARD_COOLDOWN_FAILURES", default=3)
SWITCHYARD_COOLDOWN_SECONDS = env.int("SWITCHYARD_COOLDOWN_SECONDS", default=30)
SWITCHYARD_CONFIG_POLL_SECONDS = env.float("SWITCHYARD_CONFIG_POLL_SECONDS", default=0.5)
SWITCHYARD_USAGE_FLUSH_SECONDS = env.float("SWITCHYARD_USAGE_FLUSH_SECONDS", default=0.5)
SWITCHYARD_USAGE_BATCH_SIZE = env.int("SWITCHYARD_USAGE_BATCH_SIZE", default=500)
# Cyclic-GC thresholds of a web process, and whether start-up's objects are frozen out of
# the collector's sight (config/gc_tuning.py: why). Empty thresholds keep CPython's defaults.
try:
    SWITCHYARD_GC_THRESHOLDS = gc_tuning.parse_thresholds(
        env.str(
            "SWITCHYARD_GC_THRESHOLDS", default=",".join(map(str, gc_tuning.DEFAULT_THRESHOLDS))
        )
    )
except ValueError as _exc:
    raise ImproperlyConfigured(f"SWITCHYARD_GC_THRESHOLDS: {_exc}") from None
SWITCHYARD_GC_FREEZE = env.bool("SWITCHYARD_GC_FREEZE", default=True)
# When set, GET /metrics answers only `Authorization: Bearer <this>` (Prometheus:
# `authorization: {credentials: ...}`); empty leaves it open for a private network.
SWITCHYARD_METRICS_TOKEN = env.str("SWITCHYARD_METRICS_TOKEN", default="").strip()
# Where the gateway journals usage before writing it (survives a killed process); a folder
# on local disk per web node. Empty switches the journal off.
SWITCHYARD_USAGE_JOURNAL_DIR = env.str(
    "SWITCHYARD_USAGE_JOURNAL_DIR", default=str(VAR_DIR / "usage-journal")
)
# When Redis cannot be reached: let requests through unthrottled, but refuse those that a
# hard cap or prepaid credits must guard (money is the thing not to lose).
SWITCHYARD_RATE_LIMITS_FAIL_OPEN = env.bool("SWITCHYARD_RATE_LIMITS_FAIL_OPEN", default=True)
SWITCHYARD_CAPS_FAIL_CLOSED = env.bool("SWITCHYARD_CAPS_FAIL_CLOSED", default=True)
# --- Input limits on /v1/* (routing/gateway/requests.py): a request past one is a 400, or a
# 413 for the body, before anything is reserved or sent upstream.
SWITCHYARD_MAX_BODY_BYTES = env.int("SWITCHYARD_MAX_BODY_BYTES", default=4 * 1024 * 1024)
# Seconds a client may take to send a body that did not arrive in one piece (408 after).
SWITCHYARD_BODY_READ_TIMEOUT_SECONDS = env.float("SWITCHYARD_BODY_READ_TIMEOUT_SECONDS", 30.0)
SWITCHYARD_MAX_MESSAGES = env.int("SWITCHYARD_MAX_MESSAGES", default=2048)
# Tool and JSON schemas nest a few levels; 32 leaves room and stays far below what
# re-serialising for the upstream allows (orjson: 254 levels).
SWITCHYARD_MAX_JSON_DEPTH = env.int("SWITCHYARD_MAX_JSON_DEPTH", default=32)
# Characters in one message's content (or one content part, one embeddings input).
SWITCHYARD_MAX_CONTENT_CHARS = env.int("SWITCHYARD_MAX_CONTENT_CHARS", default=1_000_000)
# Characters in all messages (or all embeddings inputs) of one request.
SWITCHYARD_MAX_PROMPT_CHARS = env.int("SWITCHYARD_MAX_PROMPT_CHARS", default=2_000_000)
# The largest max_tokens / max_completion_tokens accepted (a model's own limit still
# applies when the router picks it).
SWITCHYARD_MAX_OUTPUT_TOKENS = env.int("SWITCHYARD_MAX_OUTPUT_TOKENS", default=262_144)
SWITCHYARD_MAX_N = env.int("SWITCHYARD_MAX_N", default=8)
SWITCHYARD_MAX_STOP_SEQUENCES = env.int("SWITCHYARD_MAX_STOP_SEQUENCES", default=4)
SWITCHYARD_MAX_TOOLS = env.int("SWITCHYARD_MAX_TOOLS", default=128)
SWITCHYARD_MAX_EMBEDDING_INPUTS = env.int("SWITCHYARD_MAX_EMBEDDING_INPUTS", default=2048)
for _name in (
    "SWITCHYARD_MAX_BODY_BYTES",
    "SWITCHYARD_BODY_READ_TIMEOUT_SECONDS",
    "SWITCHYARD_MAX_MESSAGES",
    "SWITCHYARD_MAX_JSON_DEPTH",
    "SWITCHYARD_MAX_CONTENT_CHARS",
    "SWITCHYARD_MAX_PROMPT_CHARS",
    "SWITCHYARD_MAX_OUTPUT_TOKENS",
    "SWITCHYARD_MAX_N",
    "SWITCHYARD_MAX_STOP_SEQUENCES",
    "SWITCHYARD_MAX_TOOLS",
    "SWITCHYARD_MAX_EMBEDDING_INPUTS",
    "SWITCHYARD_AUTH_FAILURE_LIMIT",
    "SWITCHYARD_AUTH_FAILURE_WINDOW_SECONDS",
    "SWITCHYARD_LOGIN_FAILURES_PER_ADDRESS",
    "SWITCHYARD_LOGIN_FAILURES_PER_USERNAME",
    "SWITCHYARD_LOGIN_FAILURE_WINDOW_SECONDS",
):
    if globals()[_name] <= 0:
        raise ImproperlyConfigured(f"{_name} must be positive.")
if SWITCHYARD_MAX_JSON_DEPTH < 8:
    # An image content part sits 6 levels deep in a valid request.
    raise ImproperlyConfigured("SWITCHYARD_MAX_JSON_DEPTH must be at least 8.")
SWITCHYARD_CATALOG_SNAPSHOT = env.str(
    "SWITCHYARD_CATALOG_SNAPSHOT",
    default=str(BASE_DIR / "routing" / "data" / "model_prices_and_context_window.json"),
)
# Where the catalog sync reads the pricing map (LiteLLM's format) from: an http(s) URL, or
# empty for the bundled snapshot above.
SWITCHYARD_CATALOG_SOURCE_URL = env.str("SWITCHYARD_CATALOG_SOURCE_URL", default="")

# --- Usage rollups, retention and alerts -------------------------------------------------
# Raw usage records older than this are deleted daily (hourly rollups are kept).
SWITCHYARD_USAGE_RETENTION_DAYS = env.int("SWITCHYARD_USAGE_RETENTION_DAYS", default=90)
if SWITCHYARD_USAGE_RETENTION_DAYS < 1:
    raise ImproperlyConfigured("SWITCHYARD_USAGE_RETENTION_DAYS must be at least 1.")
# Alert webhooks to loopback, private or link-local addresses are refused unless this is on
# (a tenant's URL must not reach the installation's own network).
SWITCHYARD_WEBHOOK_ALLOW_PRIVATE_HOSTS = env.bool(
    "SWITCHYARD_WEBHOOK_ALLOW_PRIVATE_HOSTS", default=DEBUG
)

# --- DRF / OpenAPI -----------------------------------------------------------------------
REST_FRAMEWORK = {
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    # The API key first: its `authenticate_header` makes a request with no credentials a
    # 401 (with `WWW-Authenticate: Bearer`), not a 403.
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "tenants.api.authentication.TenantAPIKeyAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_PAGINATION_CLASS": "rest_framework.pagination.LimitOffsetPagination",
    "PAGE_SIZE": 50,
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Switchyard API",
    "DESCRIPTION": "Management API and the OpenAI-compatible completion contract.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    # One name for each choice set that several components share (else spectacular warns).
    "ENUM_NAME_OVERRIDES": {
        "ProviderKindEnum": "providers.choices.ProviderKind",
        "ProviderKeyScopeEnum": "providers.choices.KeyScope",
        "SpendingCapScopeEnum": "usage.choices.CapScope",
        "SpendingCapModeEnum": "usage.choices.CapMode",
    },
}

EMAIL_BACKEND = env.str("EMAIL_BACKEND", default="django.core.mail.backends.console.EmailBackend")
# Seconds an SMTP server may take (Django waits forever by default).
EMAIL_TIMEOUT = env.int("EMAIL_TIMEOUT", default=10)
DEFAULT_FROM_EMAIL = env.str("DEFAULT_FROM_EMAIL", default="switchyard@localhost")
# Used by EMAIL_BACKEND=django.core.mail.backends.filebased.EmailBackend (one file a send).
EMAIL_FILE_PATH = env.str("EMAIL_FILE_PATH", default=str(VAR_DIR / "mail"))

# json: one object per line (time, level, logger, message, request_id, extras) for a log
# shipper; text: a line a person reads in a terminal.
SWITCHYARD_LOG_FORMAT = env.str("SWITCHYARD_LOG_FORMAT", default="text" if DEBUG else "json")
if SWITCHYARD_LOG_FORMAT not in ("json", "text"):
    raise ImproperlyConfigured("SWITCHYARD_LOG_FORMAT must be json or text.")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {"redact": {"()": "config.logging.RedactSecretsFilter"}},
    "formatters": {
        "text": {
            "()": "config.logging.RedactingFormatter",
            "format": "%(asctime)s %(levelname)s %(name)s %(message)s",
        },
        "json": {"()": "config.logging.JSONFormatter"},
    },
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "formatter": SWITCHYARD_LOG_FORMAT,
            "filters": ["redact"],
        },
    },
    "root": {"handlers": ["console"], "level": env.str("LOG_LEVEL", default="INFO")},
    "loggers": {
        "django.db.backends": {"level": "WARNING"},
        # uvicorn sets up its own handlers before loading the app; these replace them in each
        # worker so its lines come out in the same format (the supervisor's stay uvicorn's).
        "uvicorn": {"handlers": ["console"], "level": "INFO", "propagate": False},
        # Configuring "uvicorn" resets its children, which turned uvicorn's access log back
        # on under --no-access-log: a line per request (~6 % of the gateway's CPU). The
        # gateway logs what matters itself; SWITCHYARD_ACCESS_LOG=true brings the lines back.
        "uvicorn.access": {
            "handlers": ["console"] if env.bool("SWITCHYARD_ACCESS_LOG", False) else [],
            "level": "INFO",
            "propagate": False,
        },
    },
}
# Celery's worker keeps the root logger configured above instead of installing its own.
CELERY_WORKER_HIJACK_ROOT_LOGGER = False
