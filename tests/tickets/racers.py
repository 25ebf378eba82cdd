"""The body of a process racing others through the bot API (see test_idempotency_race).

Kept apart from the test module: a spawned process imports this module before Django is set
up, so nothing here may import models at the top."""

import os


def escalate_when_released(
    *, database_url: str, redis_url: str, key: str, body: dict, barrier, results
):
    """Set Django up on the shared test database, wait for every racer, then escalate once and
    report (status code, ticket id)."""
    os.environ.update(
        DJANGO_SETTINGS_MODULE="dispatch.settings.test",
        DATABASE_URL=database_url,
        REDIS_URL=redis_url,
        ALLOWED_HOSTS="testserver",
    )
    import django

    django.setup()
    from rest_framework.test import APIClient

    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {key}")
    barrier.wait(timeout=60)
    response = client.post("/api/v1/escalations/", body, format="json")
    results.put((response.status_code, response.json().get("id")))
