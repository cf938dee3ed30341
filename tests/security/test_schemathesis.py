"""Schemathesis over the management API's own OpenAPI schema: whatever a client sends, the
API answers without a 5xx, with a status the schema documents and a body that matches it.

Every operation is fuzzed in-process through Django's WSGI handler (the test's database
transaction sees every write), signed in as a tenant owner who is also staff, so the staff
endpoints are exercised too. In the positive mode ids in paths are real rows of the tenant,
so bodies are tried against objects that exist, not only against 404s; the negative mode
makes up its own. Bounded: a handful of
examples per operation and mode, derandomized, no shrinking, no example database.
"""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
import schemathesis
from django.conf import settings
from django.core.signals import request_finished, request_started
from django.core.wsgi import get_wsgi_application
from django.db import close_old_connections, transaction
from django.middleware.csrf import _get_new_csrf_string
from django.test import Client
from django.utils import timezone
from hypothesis import HealthCheck, Phase, given
from hypothesis import settings as hypothesis_settings
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    response_schema_conformance,
    status_code_conformance,
)

from tenants.models import Invitation
from tests.factories import (
    CatalogModelFactory,
    EndUserFactory,
    MembershipFactory,
    ProviderFactory,
    ProviderKeyFactory,
    SpendingCapFactory,
    TenantAPIKeyFactory,
    TenantFactory,
    UserFactory,
)

CHECKS = [not_a_server_error, status_code_conformance, response_schema_conformance]
# ~45 operations x 2 modes x 5 examples: about 20 s on this 2-core machine when idle, 45 s
# with the rest of the suite running beside it. 25 per mode (100 s idle) found the two 500s
# fixed with it; test_validation.py keeps those as plain regression tests.
EXAMPLES_PER_MODE = 5


@pytest.fixture
def seeded(db, sim):
    """A tenant with one of everything the API can address by id, and an owner who is staff."""
    tenant = TenantFactory(slug="fuzzed", name="Fuzzed")
    owner = UserFactory(username="fuzz-owner", is_staff=True, is_superuser=True)
    MembershipFactory(tenant=tenant, user=owner, role="owner")
    someone = MembershipFactory(tenant=tenant, role="member")
    provider = ProviderFactory(slug="fuzz-sim", base_url=f"{sim.url}/v1")
    model = CatalogModelFactory(provider=provider, model_id="sim-eco")
    end_user = EndUserFactory(tenant=tenant, external_id="fuzz-user")
    invitation = Invitation(
        tenant=tenant,
        email="invitee@example.com",
        role="member",
        expires_at=timezone.now() + timedelta(days=7),
    )
    invitation.set_token(Invitation.generate_token())
    invitation.save()
    ids = {
        "/api/v1/provider-keys/{id}": ProviderKeyFactory(tenant=tenant, provider=provider).pk,
        "/api/v1/provider-keys/{id}/replace": ProviderKeyFactory(
            tenant=tenant, provider=provider
        ).pk,
        "/api/v1/api-keys/{id}": TenantAPIKeyFactory(tenant=tenant).pk,
        "/api/v1/api-keys/{id}/revoke": TenantAPIKeyFactory(tenant=tenant).pk,
        "/api/v1/members/{id}": someone.pk,
        "/api/v1/invitations/{id}": invitation.pk,
        "/api/v1/spending-caps/{id}": SpendingCapFactory(
            tenant=tenant, scope="user", end_user=end_user, amount_usd=Decimal(5)
        ).pk,
        "/api/v1/staff/providers/{id}": provider.pk,
        "/api/v1/staff/catalog-models/{id}": model.pk,
    }
    return owner, ids


@pytest.fixture
def credentials(seeded):
    """Session and CSRF cookies of the owner, and the header DRF wants on unsafe methods."""
    owner, _ = seeded
    client = Client()
    client.force_login(owner)
    csrf = _get_new_csrf_string()
    cookies = {
        settings.SESSION_COOKIE_NAME: client.cookies[settings.SESSION_COOKIE_NAME].value,
        settings.CSRF_COOKIE_NAME: csrf,
    }
    return cookies, {"X-CSRFToken": csrf}


@pytest.fixture
def schema(db):
    # Django's handler closes the database connection when a request ends, which would end
    # the test's transaction; its own test client unhooks the same signal handlers.
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    try:
        yield schemathesis.openapi.from_wsgi("/api/schema/?format=json", get_wsgi_application())
    finally:
        request_started.connect(close_old_connections)
        request_finished.connect(close_old_connections)


def _fixed_path(operation, ids: dict[str, int]) -> dict | None:
    if operation.path in ids:
        return {"id": ids[operation.path]}
    if "{power_level}" in operation.path:
        return {"power_level": "balanced"}
    return None


@pytest.mark.timeout(180)  # a hard ceiling far above what it takes, for a loaded machine
def test_no_generated_request_gets_a_5xx_or_an_answer_outside_the_schema(
    schema, seeded, credentials
):
    _, ids = seeded
    cookies, headers = credentials
    failures: list[str] = []
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 40  # every management operation, not a filtered few

    for operation in operations:
        fixed = _fixed_path(operation, ids)
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            strategy = operation.as_strategy(
                generation_mode=mode,
                path_parameters=fixed if mode is GenerationMode.POSITIVE else None,
            )

            @hypothesis_settings(
                max_examples=EXAMPLES_PER_MODE,
                derandomize=True,
                database=None,
                deadline=None,
                phases=[Phase.explicit, Phase.generate],
                suppress_health_check=list(HealthCheck),
            )
            @given(case=strategy)
            def call(case):
                # The schema documents a bearer scheme too; a made-up key would end every
                # request at authentication, before the code worth fuzzing.
                if case.headers:
                    case.headers.pop("Authorization", None)
                # A savepoint per request: a database error answered as a 500 must not
                # poison the transaction for every operation after it.
                savepoint = transaction.savepoint()
                response = case.call(headers=headers, cookies=cookies)
                if response.status_code >= 500:
                    transaction.savepoint_rollback(savepoint)
                else:
                    transaction.savepoint_commit(savepoint)
                case.validate_response(response, checks=CHECKS, headers=headers)

            # Collect every operation's failures (Schemathesis raises a group), then report.
            try:
                call()
            except (Exception, BaseExceptionGroup) as exc:
                failures.append(f"{operation.label} [{mode}]: {exc}")

    assert not failures, "\n\n".join(failures)
