"""One settings module, driven by KEHU_* environment variables with secure defaults.

Everything a deployment changes is read here through the typed helpers below; nothing else in
the code base reads the environment. The embedded default keeps all state in the data folder
(``./var``): the SQLite database, the queue, the secret key and the encryption keys.
"""

from __future__ import annotations

import os
import secrets
import sys
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent


def env_str(name: str, default: str = "") -> str:
    """The variable's value; unset and empty both mean the default."""
    return os.environ.get(name, "").strip() or default


def env_bool(name: str, default: bool = False) -> bool:
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    value = raw.strip().lower()
    if value in {"1", "true", "yes", "on"}:
        return True
    if value in {"0", "false", "no", "off"}:
        return False
    raise ValueError(f"{name} must be a boolean (true/false), got {raw!r}")


def env_int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        return int(raw)
    except ValueError as error:
        raise ValueError(f"{name} must be an integer, got {raw!r}") from error


def env_float(name: str, default: float) -> float:
    raw = env_str(name)
    if not raw:
        return default
    try:
        return float(raw)
    except ValueError:
        raise ValueError(f"{name} must be a number, got {raw!r}") from None


def env_list(name: str, default: list[str]) -> list[str]:
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    return [item.strip() for item in raw.split(",") if item.strip()]


def read_or_create_secret(path: Path, length: int = 50) -> str:
    """Return the secret stored at ``path``, creating it (mode 0600) on first run."""
    if path.exists():
        return path.read_text(encoding="utf-8").strip()
    path.parent.mkdir(parents=True, exist_ok=True)
    value = secrets.token_urlsafe(length)
    # O_EXCL: two processes starting at once must not both write a different key.
    try:
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return path.read_text(encoding="utf-8").strip()
    with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
        handle.write(value)
    return value


DATA_DIR = Path(env_str("KEHU_DATA_DIR", str(Path.cwd() / "var"))).resolve()
DATA_DIR.mkdir(parents=True, exist_ok=True)

DEBUG = env_bool("KEHU_DEBUG", False)
TESTING = "pytest" in sys.modules or env_bool("KEHU_TESTING", False)
# Production: secrets must come from the environment and the site is served over TLS.
PRODUCTION = env_bool("KEHU_PRODUCTION", False)
if PRODUCTION and DEBUG:
    raise ImproperlyConfigured("KEHU_DEBUG must be off when KEHU_PRODUCTION is on")
if PRODUCTION and not env_str("KEHU_SECRET_KEY"):
    raise ImproperlyConfigured("KEHU_PRODUCTION is on but KEHU_SECRET_KEY is not set")

SECRET_KEY = env_str("KEHU_SECRET_KEY") or read_or_create_secret(DATA_DIR / "secret_key")
ALLOWED_HOSTS = env_list("KEHU_ALLOWED_HOSTS", ["127.0.0.1", "localhost", "[::1]"])
CSRF_TRUSTED_ORIGINS = env_list("KEHU_CSRF_TRUSTED_ORIGINS", [])

# Behind TLS (KEHU_HTTPS=true) cookies are secure and plain HTTP is redirected.
HTTPS = env_bool("KEHU_HTTPS", PRODUCTION)
SESSION_COOKIE_SECURE = HTTPS
CSRF_COOKIE_SECURE = HTTPS
SECURE_SSL_REDIRECT = HTTPS
SECURE_HSTS_SECONDS = env_int("KEHU_HSTS_SECONDS", 31_536_000 if HTTPS else 0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = HTTPS
SECURE_HSTS_PRELOAD = HTTPS
if env_bool("KEHU_BEHIND_PROXY", False):
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"
SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_AGE = env_int("KEHU_SESSION_SECONDS", 12 * 3600)
SESSION_ENGINE = "django.contrib.sessions.backends.db"

INSTALLED_APPS = [
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django_htmx",
    "huey.contrib.djhuey",
    "ninja",
    "kehu.core",
    "kehu.accounts",
    "kehu.customers",
    "kehu.loyalty",
    "kehu.commerce",
    "kehu.engagement",
    "kehu.dataops",
    "kehu.analytics",
    "kehu.marketing",
    "kehu.ops",
    "kehu.web",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "kehu.core.middleware.RequestIdMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.locale.LocaleMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
]

ROOT_URLCONF = "kehu.urls"
WSGI_APPLICATION = "kehu.wsgi.application"
AUTH_USER_MODEL = "accounts.User"
LOGIN_URL = "web:login"
LOGIN_REDIRECT_URL = "web:home"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.template.context_processors.i18n",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "kehu.web.context_processors.navigation",
            ],
        },
    },
]

# --- Database -------------------------------------------------------------------------------
SQLITE_PATH = DATA_DIR / "kehu.sqlite3"
DATABASE_URL = env_str("KEHU_DATABASE_URL", f"sqlite:///{SQLITE_PATH}")
# Persistent connections: PostgreSQL serves 7x fewer requests without them (DESIGN.md §7).
CONN_MAX_AGE = env_int("KEHU_CONN_MAX_AGE", 600)
# Health checks cost a round trip per request (a tenth of an authenticated API call on
# PostgreSQL here); without them a request on a connection the server dropped fails once and
# the connection is replaced. Turn them on where connections are cut often (KEHU_DB_HEALTH_CHECKS).
_database = dj_database_url.parse(
    DATABASE_URL, conn_max_age=CONN_MAX_AGE, conn_health_checks=env_bool("KEHU_DB_HEALTH_CHECKS", False)
)
if _database["ENGINE"] == "django.db.backends.sqlite3":
    _database["OPTIONS"] = {
        # IMMEDIATE: a write transaction takes the lock at BEGIN, so two writers queue on the
        # busy timeout instead of failing with "database is locked" when they upgrade.
        "transaction_mode": "IMMEDIATE",
        "timeout": 20,
        "init_command": (
            "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; PRAGMA busy_timeout=20000; "
            "PRAGMA foreign_keys=ON; PRAGMA temp_store=MEMORY; PRAGMA mmap_size=268435456;"
        ),
    }
    _database["TEST"] = {
        "NAME": str(DATA_DIR / "test.sqlite3") if env_bool("KEHU_TEST_SQLITE_FILE") else None
    }
elif _database["ENGINE"] == "django.db.backends.postgresql":
    # Statements sent through kehu.core.rawrows.hot_path_cursor are prepared after five runs;
    # Django's own client-side cursors never prepare. Off for poolers that cannot keep them.
    _database["OPTIONS"] = {"prepare_threshold": 5 if env_bool("KEHU_DB_PREPARED_STATEMENTS", True) else None}
DATABASES = {"default": _database}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Queue (Huey) ---------------------------------------------------------------------------
QUEUE_URL = env_str("KEHU_QUEUE_URL", f"sqlite:///{DATA_DIR / 'queue.sqlite3'}")
if QUEUE_URL.startswith(("redis://", "rediss://")):
    HUEY = {
        "huey_class": "huey.RedisHuey",
        "name": "kehu",
        "url": QUEUE_URL,
        "immediate": env_bool("KEHU_QUEUE_IMMEDIATE", TESTING),
        "consumer": {"workers": env_int("KEHU_WORKER_THREADS", 2), "worker_type": "thread"},
    }
elif QUEUE_URL.startswith("sqlite:///"):
    HUEY = {
        "huey_class": "huey.SqliteHuey",
        "name": "kehu",
        "filename": QUEUE_URL.removeprefix("sqlite:///"),
        "immediate": env_bool("KEHU_QUEUE_IMMEDIATE", TESTING),
        "consumer": {"workers": env_int("KEHU_WORKER_THREADS", 2), "worker_type": "thread"},
    }
else:
    raise ValueError(f"KEHU_QUEUE_URL must start with sqlite:/// or redis://, got {QUEUE_URL!r}")

# --- Caches ---------------------------------------------------------------------------------
# Counters that must hold across processes (the self-service page's rate limits) live here, so
# the default is a folder in the data folder, shared by every worker process of one machine;
# local memory would give each process its own count. Several web machines share redis://.
CACHE_URL = env_str("KEHU_CACHE_URL", f"file://{DATA_DIR / 'cache'}")
CACHES: dict[str, dict[str, object]]
if CACHE_URL.startswith(("redis://", "rediss://")):
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": CACHE_URL}}
elif CACHE_URL.startswith("file://"):
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.filebased.FileBasedCache",
            "LOCATION": CACHE_URL.removeprefix("file://"),
            # Culling drops counters: keep room for many clients before it starts.
            "OPTIONS": {"MAX_ENTRIES": 20_000},
        }
    }
elif CACHE_URL == "locmem://":
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
else:
    raise ValueError(f"KEHU_CACHE_URL must be file:///path, redis://... or locmem://, got {CACHE_URL!r}")

# --- Passwords ------------------------------------------------------------------------------
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator", "OPTIONS": {"min_length": 10}},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
if TESTING:
    # Hashing at full strength would dominate the test run; production keeps PBKDF2 defaults.
    PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]

# Login throttling: failures counted per account and per client address over a window.
LOGIN_FAILURE_WINDOW_SECONDS = env_int("KEHU_LOGIN_FAILURE_WINDOW", 15 * 60)
LOGIN_MAX_FAILURES_PER_ACCOUNT = env_int("KEHU_LOGIN_MAX_FAILURES_PER_ACCOUNT", 5)
LOGIN_MAX_FAILURES_PER_IP = env_int("KEHU_LOGIN_MAX_FAILURES_PER_IP", 20)

# --- Self-service update links (customers correct their own details) -------------------------
SELF_SERVICE_LINK_HOURS = env_int("KEHU_SELF_SERVICE_LINK_HOURS", 72)
# "required": a customer's changes wait for staff approval; "auto": they apply at once.
SELF_SERVICE_APPROVAL = env_str("KEHU_SELF_SERVICE_APPROVAL", "required")
if SELF_SERVICE_APPROVAL not in {"required", "auto"}:
    raise ValueError(f"KEHU_SELF_SERVICE_APPROVAL must be required or auto, got {SELF_SERVICE_APPROVAL!r}")
# Requests to the public page per client address and per link within the window (seconds).
SELF_SERVICE_RATE_WINDOW = env_int("KEHU_SELF_SERVICE_RATE_WINDOW", 600)
SELF_SERVICE_MAX_REQUESTS_PER_IP = env_int("KEHU_SELF_SERVICE_MAX_REQUESTS_PER_IP", 60)
SELF_SERVICE_MAX_REQUESTS_PER_LINK = env_int("KEHU_SELF_SERVICE_MAX_REQUESTS_PER_LINK", 20)

# --- Loyalty rules --------------------------------------------------------------------------
# Points expire this many days after they were earned (0: never), first-in first-out.
POINTS_VALIDITY_DAYS = env_int("KEHU_POINTS_VALIDITY_DAYS", 365)
# The nightly job tells customers (a domain signal for automation) this many days ahead.
POINTS_EXPIRY_REMINDER_DAYS = env_int("KEHU_POINTS_EXPIRY_REMINDER_DAYS", 30)
# What one point pays for at the till, in fen (1: 100 points = 1 yuan).
POINTS_REDEEM_FEN = env_int("KEHU_POINTS_REDEEM_FEN", 1)
# Cancelling a stored-value card refunds the paid part of its balance ("paid_only"), or the
# whole balance bonus included ("all"), or nothing ("none").
CARD_CANCEL_REFUND = env_str("KEHU_CARD_CANCEL_REFUND", "paid_only")
if CARD_CANCEL_REFUND not in {"paid_only", "all", "none"}:
    raise ValueError(f"KEHU_CARD_CANCEL_REFUND must be paid_only, all or none, got {CARD_CANCEL_REFUND!r}")
# Tiers follow spend or points over this many trailing days.
TIER_WINDOW_DAYS = env_int("KEHU_TIER_WINDOW_DAYS", 365)

# --- Data operations (imports, exports, duplicates, data quality) ---------------------------
# An import commits this many rows per transaction (its resume checkpoint moves with each).
IMPORT_BATCH_ROWS = env_int("KEHU_IMPORT_BATCH_ROWS", 5000)
# A staged import (customers on SQLite: the rows wait in scratch files, not in memory) commits
# bigger batches: each commit rewrites the indexes' hot pages, a third of the write at 5,000.
IMPORT_STAGED_BATCH_ROWS = env_int("KEHU_IMPORT_STAGED_BATCH_ROWS", 20000)
# A staged SQLite import of at least this many rows that also at least doubles the customer
# table drops the random-key lookup indexes and builds them at the end
# (kehu/dataops/services/importing/deferred_indexes.py).
IMPORT_DEFER_INDEXES_MIN_ROWS = env_int("KEHU_IMPORT_DEFER_INDEXES_MIN_ROWS", 100_000)
# Uploaded import files (the customers' data unencrypted, as the other system exported it) are
# deleted this many days after their import was last used, once it has nothing to resume
# (kehu/dataops/services/importing/uploads.py); 0 keeps them.
IMPORT_FILE_DAYS = env_int("KEHU_IMPORT_FILE_DAYS", 30)
# Processes that validate and prepare rows during a big import (0: one per core, at most 4).
IMPORT_WORKERS = env_int("KEHU_IMPORT_WORKERS", 0)
# Exports up to this many rows download in the request; bigger ones run as a background job.
EXPORT_DIRECT_MAX_ROWS = env_int("KEHU_EXPORT_DIRECT_MAX_ROWS", 5000)
# A background export's download link works this many hours.
EXPORT_LINK_HOURS = env_int("KEHU_EXPORT_LINK_HOURS", 24)
# The data-quality report calls a record stale after this many months without an update.
QUALITY_STALE_MONTHS = env_int("KEHU_QUALITY_STALE_MONTHS", 12)
# Customers who spent (net) or hold at least this much, in fen, are "high value" for verification.
QUALITY_HIGH_VALUE_FEN = env_int("KEHU_QUALITY_HIGH_VALUE_FEN", 1_000_000)
# Duplicate candidates score at least this (0–1); chosen on the labelled benchmark
# (docs/benchmarks.md, dedup): precision 1.0, recall 0.95 there.
DEDUP_THRESHOLD = env_float("KEHU_DEDUP_THRESHOLD", 0.6)
# Pairs at or above this score, with no conflicting field, may be merged without review.
AUTO_MERGE_THRESHOLD = env_float("KEHU_AUTO_MERGE_THRESHOLD", 0.97)

# --- Encryption -----------------------------------------------------------------------------
# "id:base64key,id:base64key"; the first key encrypts, all of them decrypt. Without it the keys
# live in DATA_DIR/keys.json (mode 0600), created on first use.
ENCRYPTION_KEYS = env_str("KEHU_ENCRYPTION_KEYS")
ENCRYPTION_KEY_FILE = DATA_DIR / "keys.json"
BLIND_INDEX_KEY = env_str("KEHU_BLIND_INDEX_KEY")

# --- Internationalisation -------------------------------------------------------------------
LANGUAGE_CODE = env_str("KEHU_LANGUAGE", "zh-hans")
LANGUAGES = [("zh-hans", "简体中文"), ("en", "English")]
LOCALE_PATHS = [BASE_DIR / "locale"]
TIME_ZONE = env_str("KEHU_TIME_ZONE", "Asia/Shanghai")
# Phone numbers written without a country code are read as numbers of this region.
PHONE_REGION = env_str("KEHU_PHONE_REGION", "CN")
USE_I18N = True
USE_TZ = True

# --- Static files ---------------------------------------------------------------------------
STATIC_URL = "/static/"
STATIC_ROOT = DATA_DIR / "static"
STATIC_ROOT.mkdir(exist_ok=True)
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"
        if not (DEBUG or TESTING)
        else "django.contrib.staticfiles.storage.StaticFilesStorage"
    },
}
# Without collectstatic (development, tests) whitenoise serves straight from the app folders.
WHITENOISE_USE_FINDERS = DEBUG or TESTING
WHITENOISE_AUTOREFRESH = DEBUG

# --- API ------------------------------------------------------------------------------------
NINJA_PAGINATION_PER_PAGE = 50
API_PAGE_MAX = 200

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env_str("KEHU_LOG_LEVEL", "INFO")},
    "loggers": {"django.request": {"level": "ERROR"}, "huey": {"level": "WARNING"}},
}
