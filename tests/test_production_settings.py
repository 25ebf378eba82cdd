"""The production settings: secure by default, and nothing runs on a development default."""

import os
import subprocess
import sys

from .live import ROOT

PRODUCTION_ENV = {
    "DJANGO_SETTINGS_MODULE": "dispatch.settings.production",
    "SECRET_KEY": "k5Zp0-3vQm8_wJr2Xt9Ly4Hs7Nb1Dc6Fg0Vh3Ke8Ua5Wq2Rz7Po4Mi9Sj1Tl6Yx3",
    "ALLOWED_HOSTS": "dispatch.example.com",
    "DATABASE_URL": "postgres://dispatch@db.example.com:5432/dispatch",
    "REDIS_URL": "redis://redis.example.com:6379/0",
}


def manage(*args: str, **env: str) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if k not in PRODUCTION_ENV and k != "DEBUG"}
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_the_deployment_check_is_clean_with_production_settings():
    result = manage("check", "--deploy", "--fail-level", "WARNING", **PRODUCTION_ENV)

    assert result.returncode == 0, result.stderr
    assert result.stdout == "System check identified no issues (0 silenced).\n"


def test_production_settings_refuse_to_start_without_a_secret_key():
    env = {k: v for k, v in PRODUCTION_ENV.items() if k != "SECRET_KEY"}

    result = manage("check", **env)

    assert result.returncode == 1
    assert "RuntimeError: Production settings need SECRET_KEY in the environment." in result.stderr


def test_production_settings_turn_debug_off_whatever_the_environment_says():
    result = manage(
        "shell",
        "--no-imports",
        "-c",
        "from django.conf import settings; "
        "print(settings.DEBUG, settings.SESSION_COOKIE_SECURE, settings.CSRF_COOKIE_SECURE, "
        "settings.SECURE_HSTS_SECONDS, settings.SECURE_SSL_REDIRECT)",
        DEBUG="1",
        **PRODUCTION_ENV,
    )

    assert result.returncode == 0, result.stderr
    assert result.stdout == "False True True 31536000 True\n"
