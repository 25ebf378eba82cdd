from django.apps import AppConfig


class DispatchConfig(AppConfig):
    name = "dispatch"
    verbose_name = "Routing"

    def ready(self) -> None:
        # Register the tasks in every process, so they can be sent (or run eagerly) by name.
        from . import tasks  # noqa: F401
