"""Settings for the test suite: the base settings, with tasks run in-process.

Tests that need real workers start them as processes with the base settings.
"""

import os
import tempfile

os.environ.setdefault("SECRET_KEY", "tests-only-not-secret")

from .base import *  # noqa: E402,F403
from .base import DATABASES  # noqa: E402

CELERY_TASK_ALWAYS_EAGER = True
CELERY_TASK_EAGER_PROPAGATES = True
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
# Per test process, so rate-limit counters never leak between test runs through Redis.
CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}

if "pool" in DATABASES["default"].get("OPTIONS", {}):
    # The race tests run a dozen threads at once, each holding a connection for its whole run,
    # beside the test's own: more than a serving process's pool needs.
    DATABASES["default"]["OPTIONS"]["pool"]["max_size"] = 20

if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # A file, not memory, so the processes that live tests start share the test database.
    DATABASES["default"]["TEST"] = {
        "NAME": os.path.join(tempfile.gettempdir(), f"gig-dispatch-test-{os.getpid()}.sqlite3")
    }
