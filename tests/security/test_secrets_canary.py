"""Secrets stay secret: canary keys driven through every error path never surface anywhere.

One long scenario seeds canary secrets (a Switchyard API key, provider keys the upstream
accepts, rejects with 401, or echoes back in its own error messages), then drives the paths
where a secret could slip out: a bad or near-miss key, a cap reached, a rate limit, invalid
requests, upstream 401 and 500, key validation failures (page, API, background task), admin
edits, audit entries. Then it searches everything an operator or a client could read:

* every log record (a handler on the root logger at DEBUG, before any redaction runs, so a
  secret caught only by the redacting formatter still counts: the code must not log it);
* every non-encrypted text, varchar and JSON column of every table;
* the HTML of the tenant pages and of every admin changelist and change page;
* every response body and header (error bodies above all), the e-mails sent;
* /metrics, labels and all.

Each canary is searched whole and by its middle 12 characters (the part no mask shows), so a
truncated or re-quoted copy is found too. Finally: a key is never accepted from a URL.
"""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from decimal import Decimal

import httpx
import pytest
from django.apps import apps
from django.contrib import admin
from django.db import connection
from django.test import Client
from django.urls import NoReverseMatch, reverse
from rest_framework.test import APIClient

from providers import tasks as provider_tasks
from providers.choices import KeyScope, KeyStatus
from providers.models import ProviderKey
from tenants import services as tenant_services
from tenants.crypto import EncryptedTextField
from tenants.models import EndUser
from tests.factories import (
    CatalogModelFactory,
    MembershipFactory,
    ProviderKeyFactory,
    TenantFactory,
    UserFactory,
    ensure_default_data,
)
from tests.security.hostile_upstream import echo_key, hostile_upstream
from tests.tenants.admin_forms import changeform_data
from tests.world_fixtures import add_provider, platform_key
from usage.choices import CapScope
from usage.models import CreditLedgerEntry, SpendingCap

CHAT = {"model": "sim-eco", "messages": [{"role": "user", "content": "hello"}], "max_tokens": 16}
# Rows per model whose admin change page is fetched (enough to render every kind of row).
CHANGE_PAGES_PER_MODEL = 5


def _canary(prefix: str) -> str:
    return f"{prefix}{secrets.token_hex(16)}"


@dataclass
class Canaries:
    """The secrets of this run; a needle is a whole secret or its unmasked middle."""

    values: dict[str, str] = field(default_factory=dict)

    def add(self, name: str, value: str) -> str:
        self.values[name] = value
        return value

    def needles(self) -> dict[str, str]:
        found = {}
        for name, value in self.values.items():
            found[name] = value
            middle = len(value) // 2
            found[f"{name} (middle)"] = value[middle - 6 : middle + 6]
        return found


@dataclass
class Haystack:
    """Everything read during the scenario, by where it came from."""

    texts: list[tuple[str, str]] = field(default_factory=list)

    def add(self, where: str, text: str | bytes) -> None:
        if isinstance(text, bytes):
            text = text.decode("utf-8", "replace")
        self.texts.append((where, text))

    def response(self, where: str, response) -> None:
        if getattr(response, "streaming", False):  # Django's streamed CSV export
            body = b"".join(response.streaming_content)
        else:
            body = response.content
        self.add(f"{where} -> {response.status_code} body", body)
        self.add(f"{where} headers", "\n".join(f"{k}: {v}" for k, v in response.headers.items()))

    def hits(self, needles: dict[str, str]) -> list[str]:
        """Where each needle was found, with the text around it (for the failure message)."""
        found = []
        for where, text in self.texts:
            for name, needle in needles.items():
                at = text.find(needle)
                if at >= 0:
                    found.append(f"{name} in {where}: …{text[max(at - 120, 0) : at + 80]!r}…")
        return found


class RecordCapture(logging.Handler):
    """Every record twice: as the code handed it to logging (`raw`: message, arguments,
    extras, traceback), and as the configured handlers write it out (`emitted`)."""

    def __init__(self, outputs: list[logging.Handler]) -> None:
        super().__init__(logging.DEBUG)
        self.outputs = outputs
        self.raw: list[str] = []
        self.emitted: list[str] = []
        # While a test plays a client that puts its own key in a URL, Django attaches the
        # request (URL included) to its 4xx records: only the emitted lines are judged then.
        self.raw_paused = False
        self._formatter = logging.Formatter()

    def emit(self, record: logging.LogRecord) -> None:
        for output in self.outputs:
            copy = logging.makeLogRecord(dict(record.__dict__))
            if output.filter(copy):
                self.emitted.append(output.format(copy))
        if self.raw_paused:
            return
        try:
            message = record.getMessage()
        except Exception:  # a broken format string is still searched as written
            message = f"{record.msg!r} % {record.args!r}"
        parts = [record.name, message]
        parts += [f"{k}={v!r}" for k, v in record.__dict__.items() if k not in ("msg", "args")]
        if record.exc_info:
            parts.append(self._formatter.formatException(record.exc_info))
        if record.stack_info:
            parts.append(record.stack_info)
        self.raw.append(" ".join(parts))


# uvicorn's loggers do not propagate to the root.
SERVER_LOGGERS = ("uvicorn", "uvicorn.error", "uvicorn.access")


@pytest.fixture
def captured_logs() -> Iterator[RecordCapture]:
    root = logging.getLogger()
    # The project's handlers, as configured by settings.LOGGING (not pytest's own capture).
    outputs = [h for h in root.handlers if not type(h).__module__.startswith("_pytest")]
    assert outputs
    capture = RecordCapture(outputs=outputs)
    level = root.level
    # First in line: the redacting filter on the console handler rewrites records in place.
    root.handlers.insert(0, capture)
    root.setLevel(logging.DEBUG)
    for name in SERVER_LOGGERS:
        logging.getLogger(name).addHandler(capture)
    try:
        yield capture
    finally:
        root.handlers.remove(capture)
        root.setLevel(level)
        for name in SERVER_LOGGERS:
            logging.getLogger(name).removeHandler(capture)


@pytest.fixture
def echoing_upstream() -> Iterator[str]:
    with hostile_upstream(echo_key) as url:
        yield url


def dump_database(haystack: Haystack) -> int:
    """Every non-encrypted text-like column of every table into the haystack; rows read."""
    encrypted = {
        (model._meta.db_table, f.column)
        for model in apps.get_models()
        for f in model._meta.concrete_fields
        if isinstance(f, EncryptedTextField)
    }
    assert ("providers_providerkey", "secret") in encrypted  # the exclusion is not a no-op
    textual = {"CharField", "TextField", "JSONField", "SlugField", "EmailField", "URLField"}
    introspection = connection.introspection
    rows = 0
    with connection.cursor() as cursor:
        for table in introspection.table_names(cursor):
            columns = [
                column.name
                for column in introspection.get_table_description(cursor, table)
                if introspection.get_field_type(column.type_code, column) in textual
                and (table, column.name) not in encrypted
            ]
            if not columns:
                continue
            select = ", ".join(f"{connection.ops.quote_name(c)}::text" for c in columns)
            cursor.execute(f"SELECT {select} FROM {connection.ops.quote_name(table)}")  # noqa: S608
            for row in cursor.fetchall():
                rows += 1
                haystack.add(f"db {table}", " ".join(v for v in row if v))
    return rows


def wait_for(condition, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting for the gateway's background work")
        time.sleep(0.05)


def admin_pages(staff: Client, haystack: Haystack) -> int:
    """Every admin changelist and the change pages of its first rows."""
    fetched = 0
    for model in admin.site._registry:
        info = (model._meta.app_label, model._meta.model_name)
        try:
            changelist = reverse("admin:{}_{}_changelist".format(*info))
        except NoReverseMatch:
            continue
        response = staff.get(changelist)
        assert response.status_code == 200, changelist
        haystack.response(f"admin {changelist}", response)
        fetched += 1
        for pk in model._default_manager.values_list("pk", flat=True)[:CHANGE_PAGES_PER_MODEL]:
            url = reverse("admin:{}_{}_change".format(*info), args=[pk])
            page = staff.get(url)
            assert page.status_code == 200, url
            haystack.response(f"admin {url}", page)
            fetched += 1
    return fetched


def test_canary_secrets_never_surface_in_logs_database_pages_bodies_or_metrics(
    gateway, sim, echoing_upstream, captured_logs, mailoutbox
):
    canaries = Canaries()
    haystack = Haystack()

    # --- the world: a tenant, its canary API key, providers and canary provider keys -------
    ensure_default_data()
    tenant = TenantFactory(slug="canary", name="Canary")
    CreditLedgerEntry.objects.create(tenant=tenant, kind="grant", amount_usd=Decimal(100))
    owner = MembershipFactory(tenant=tenant, role="owner").user
    staff_user = UserFactory(username="canary-staff", is_staff=True, is_superuser=True)
    sim_openai = add_provider(sim.url, "sim-openai")
    echo_401 = add_provider(echoing_upstream, "echo-401", path="/s401")
    echo_500 = add_provider(echoing_upstream, "echo-500", path="/s500")
    platform_key(sim_openai, canaries.add("platform key", _canary("cnry-platform-")))
    CatalogModelFactory(provider=sim_openai, model_id="sim-eco", name="sim-eco")
    CatalogModelFactory(
        provider=sim_openai,
        model_id="sim-precision",
        name="sim-precision",
        input_price_per_mtok=Decimal(10),
        output_price_per_mtok=Decimal(30),
    )
    CatalogModelFactory(provider=echo_401, model_id="echo-model", name="echo-401")
    CatalogModelFactory(provider=echo_500, model_id="echo-model", name="echo-500")
    key_row, api_key = tenant_services.create_api_key(tenant=tenant, name="canary", actor=owner)
    canaries.add("API key", api_key)
    echo_key = ProviderKeyFactory(
        provider=echo_401,
        tenant=tenant,
        secret=canaries.add("key echoed in a 401", _canary("cnry-echoed-401-")),
        last4="e401",
    )
    ProviderKeyFactory(
        provider=echo_500,
        tenant=tenant,
        secret=canaries.add("key echoed in a 500", _canary("cnry-echoed-500-")),
        last4="e500",
    )
    end_user = EndUser.objects.create(tenant=tenant, external_id="eve")
    ProviderKeyFactory(
        provider=sim_openai,
        tenant=tenant,
        end_user=end_user,
        scope=KeyScope.USER,
        secret=canaries.add("rejected user key", _canary("sim-bad-cnry-user-")),
        last4="user",
    )
    gateway.sync()

    owner_page = Client()
    owner_page.force_login(owner)
    owner_api = APIClient()
    owner_api.force_login(owner)
    staff = Client()
    staff.force_login(staff_user)
    staff.user = staff_user

    # --- management API: a BYOK key the provider accepts, one it refuses, junk -------------
    byok = canaries.add("BYOK key", _canary("cnry-byok-"))
    response = owner_api.post(
        "/api/v1/provider-keys",
        {"provider": "sim-openai", "scope": "tenant", "secret": byok, "label": "byok"},
        format="json",
    )
    assert response.status_code == 201, response.content
    haystack.response("api add key", response)
    byok_row = ProviderKey.objects.get(pk=response.json()["id"])
    for secret, name in [
        (_canary("sim-bad-cnry-api-"), "key refused on add (API)"),
        (_canary("cnry-junk-\u00e9-"), "key with a bad character (API)"),
    ]:
        response = owner_api.post(
            "/api/v1/provider-keys",
            {"provider": "sim-openai", "scope": "tenant", "secret": canaries.add(name, secret)},
            format="json",
        )
        assert response.status_code == 400, response.content
        haystack.response(f"api {name}", response)
    response = owner_api.post(
        f"/api/v1/provider-keys/{byok_row.pk}/replace",
        {"secret": canaries.add("key refused on replace (API)", _canary("sim-bad-cnry-rep-"))},
        format="json",
    )
    assert response.status_code == 400, response.content
    haystack.response("api replace refused", response)

    # --- keys page: a refused add and a refused replacement ---------------------------------
    response = owner_page.post(
        reverse("providers:key-add"),
        {
            "provider": sim_openai.pk,
            "scope": "tenant",
            "label": "page",
            "secret": canaries.add("key refused on add (page)", _canary("sim-bad-cnry-page-")),
        },
    )
    assert response.status_code == 200
    assert b"errorlist" in response.content or b"error" in response.content
    haystack.response("page add refused", response)
    response = owner_page.post(
        reverse("providers:key-replace", args=[byok_row.pk]),
        {"secret": canaries.add("key refused on replace (page)", _canary("sim-bad-cnry-prp-"))},
    )
    assert response.status_code == 200
    haystack.response("page replace refused", response)

    # --- background validation of a key the provider rejects ------------------------------
    pending = ProviderKeyFactory(
        provider=sim_openai,
        tenant=tenant,
        status=KeyStatus.PENDING,
        secret=canaries.add("key failing validation", _canary("sim-bad-cnry-task-")),
        last4="task",
    )
    assert provider_tasks.validate_provider_key(pending.pk) == KeyStatus.INVALID
    gateway.sync()

    # --- the gateway: success, bad keys, invalid requests, upstream 401 and 500 -------------
    v1 = f"{gateway.url}/v1"
    auth = {"Authorization": f"Bearer {api_key}"}
    near_miss = api_key[:-4] + ("AAAA" if not api_key.endswith("AAAA") else "BBBB")

    def gw(name: str, method: str = "POST", path: str = "/chat/completions", **kwargs):
        response = httpx.request(method, f"{v1}{path}", timeout=15, **kwargs)
        haystack.response(f"gateway {name}", response)
        return response

    assert gw("success", headers=auth, json=CHAT).status_code == 200
    assert gw("stream", headers=auth, json={**CHAT, "stream": True}).status_code == 200
    near = gw("near-miss key", headers={"Authorization": f"Bearer {near_miss}"}, json=CHAT)
    assert near.status_code == 401
    for name, headers in [
        ("key as basic auth", {"Authorization": f"Basic {api_key}"}),
        ("key with a suffix", {"Authorization": f"Bearer {api_key}x"}),
        ("key in x-api-key", {"x-api-key": api_key}),
    ]:
        assert gw(name, headers=headers, json=CHAT).status_code == 401
    assert gw("bad json", headers=auth, content=b"{" + api_key.encode()).status_code == 400
    assert gw("no messages", headers=auth, json={"model": "sim-eco"}).status_code == 400
    assert gw("unknown model", headers=auth, json={**CHAT, "model": "nope"}).status_code == 404
    models_only = tenant_services.create_api_key(tenant=tenant, name="models", scopes=["models"])
    gateway.sync()
    scoped = {"Authorization": f"Bearer {canaries.add('models-only key', models_only[1])}"}
    assert gw("missing scope", headers=scoped, json=CHAT).status_code == 403

    # The end user's own key is refused by the simulator (401): marked, alerted, and the
    # other candidates tried (here the echoing ones, which fail too: a 502 listing attempts).
    assert gw("user key 401", headers=auth, json={**CHAT, "user": "eve"}).status_code in (
        200,
        502,
    )
    # The echoing upstream quotes the tenant's key in a 500 and in a 401.
    gw("echoed 500", headers=auth, json={**CHAT, "model": "echo-500"})
    gw("echoed 401", headers=auth, json={**CHAT, "model": "echo-401"})
    gw("echoed, streamed", headers=auth, json={**CHAT, "model": "echo-500", "stream": True})
    wait_for(lambda: ProviderKey.objects.get(pk=echo_key.pk).status == KeyStatus.INVALID)
    wait_for(
        lambda: ProviderKey.objects.filter(end_user=end_user, status=KeyStatus.INVALID).exists()
    )

    # Rate limited: this key may make one request a minute now.
    key_row.requests_per_minute = 1
    key_row.save()
    gateway.sync()
    statuses = {gw("rate limited", headers=auth, json=CHAT).status_code for _ in range(3)}
    assert 429 in statuses
    key_row.requests_per_minute = None
    key_row.save()
    # Cap reached: a hard cap far below one sim-precision reservation.
    SpendingCap.objects.create(
        tenant=tenant, scope=CapScope.TENANT, amount_usd=Decimal("0.01"), mode="hard"
    )
    gateway.sync()
    expensive = {**CHAT, "model": "sim-precision", "max_tokens": 4000}
    capped = gw("cap reached", headers=auth, json=expensive)
    assert capped.status_code == 402, capped.text

    # --- no key ever travels in a URL ------------------------------------------------------
    # (Our own client logs the URLs it calls, and Django attaches a refused request to its
    # log record; the lines written out must still hold no key.)
    captured_logs.raw_paused = True
    for param in ("api_key", "key", "access_token"):
        assert gw(f"?{param}=", "GET", f"/models?{param}={api_key}").status_code == 401
        chat = gw(f"chat ?{param}=", path=f"/chat/completions?{param}={api_key}", json=CHAT)
        assert chat.status_code == 401
        response = APIClient().get(f"/api/v1/usage?{param}={api_key}")
        assert response.status_code == 401
        haystack.response(f"api ?{param}=", response)
    captured_logs.raw_paused = False

    # --- admin edits: a new secret, a refused form, the test action ------------------------
    url = reverse("admin:providers_providerkey_change", args=[byok_row.pk])
    admin_secret = canaries.add("key set in the admin", _canary("cnry-admin-"))
    response = staff.post(url, changeform_data(staff.get(url), new_secret=admin_secret))
    assert response.status_code == 302, response.content[:2000]
    response = staff.post(
        reverse("admin:providers_providerkey_add"),
        {
            "provider": sim_openai.pk,
            "tenant": tenant.pk,
            "end_user": "999999",  # not a choice: the form comes back with the secret typed
            "new_secret": canaries.add("key in a refused admin form", _canary("cnry-adm-bad-")),
        },
    )
    assert response.status_code == 200
    haystack.response("admin refused form", response)
    response = staff.post(
        reverse("admin:providers_providerkey_changelist"),
        {"action": "test_keys", "_selected_action": [byok_row.pk, pending.pk]},
        follow=True,
    )
    assert response.status_code == 200
    haystack.response("admin test keys", response)

    # --- what people read: tenant pages, the management API, the admin, metrics -------------
    playground = owner_page.get(reverse("routing:playground"))
    assert playground.status_code == 200
    token = playground.context["token"]
    haystack.response("page routing:playground", playground)
    for name in [
        "providers:key-list",
        "tenants:api-key-list",
        "tenants:member-list",
        "routing:settings",
        "usage:dashboard",
        "usage:spending",
    ]:
        response = owner_page.get(reverse(name))
        assert response.status_code == 200, name
        haystack.response(f"page {name}", response)
    for path in [
        "/api/v1/provider-keys",
        f"/api/v1/provider-keys/{byok_row.pk}",
        "/api/v1/api-keys",
        "/api/v1/usage",
        "/api/v1/usage/export.csv",
        "/api/v1/limits",
        "/api/v1/credits",
        "/api/v1/settings",
        "/api/v1/audit-log",  # where it exists
    ]:
        response = owner_api.get(path)
        assert response.status_code in (200, 404), path
        haystack.response(f"api {path}", response)
    assert admin_pages(staff, haystack) > 20
    gateway.flush_usage()
    metrics = httpx.get(f"{gateway.url}/metrics", timeout=10)
    assert metrics.status_code == 200
    haystack.response("metrics", metrics)

    # --- and everything written or logged ---------------------------------------------------
    assert dump_database(haystack) > 50
    for message in mailoutbox:
        haystack.add(f"mail to {message.to}", f"{message.subject}\n{message.body}")
    for line in captured_logs.raw:
        haystack.add("log record", line)
    for line in captured_logs.emitted:
        haystack.add("log line", line)
    assert captured_logs.raw, "nothing was logged: the capture is not attached"
    assert len(captured_logs.emitted) >= len(captured_logs.raw)

    # The search finds what it should: each canary was really sent, and the haystack really
    # holds readable copies of what the scenario did (masks, prefixes, error messages).
    assert len(canaries.values) >= 12
    assert any(key_row.prefix in text for _, text in haystack.texts)
    assert any(byok_row.masked in text for where, text in haystack.texts if "page" in where)
    assert any("Incorrect API key" in text for where, text in haystack.texts if "db" in where)
    hits = haystack.hits(canaries.needles())
    assert not hits, "\n".join(hits)
    # The playground token is a bearer credential too: it stays in its own page.
    assert [where for where, text in haystack.texts if token in text] == [
        "page routing:playground -> 200 body"
    ]
