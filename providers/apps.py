from django.apps import AppConfig


class ProvidersConfig(AppConfig):
    name = "providers"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # Registers llm_provider_health with prometheus_client's registry (it reads the
        # providers' rows when scraped), in every process, whatever it imports first.
        from providers import metrics  # noqa: F401
