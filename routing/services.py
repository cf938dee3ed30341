"""Writes for routing: the model catalog. Every change is audited and bumps the config version."""

from __future__ import annotations

import logging
import os
import time
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from providers.adapters.base import Target
from providers.choices import KeyStatus, ProviderKind, WireProtocol
from providers.models import Provider
from providers.presets import preset_for
from providers.selectors import platform_keys, platform_providers, providers_for
from routing import catalog, catalog_sources
from routing import selectors as routing_selectors
from routing.catalog import CatalogEntry, CatalogSourceError, SkippedEntry
from routing.choices import ModelMode
from routing.models import (
    CatalogModel,
    CatalogPriceChange,
    CatalogSyncRun,
    LLMSettings,
    RoutingPolicy,
)
from tenants import audit, config_version
from tenants.models import EndUser, Tenant

logger = logging.getLogger(__name__)

# Provider.options key: False keeps a platform provider out of imports that name no
# providers (the demo's simulator providers speak Anthropic's protocol but serve other models).
CATALOG_SYNC_OPTION = "catalog_sync"
# Rows per INSERT / UPDATE statement: bulk_update builds one CASE per field and row, and
# PostgreSQL's statements stay small and fast at this size (~1,000 rows import in < 1 s).
CATALOG_BATCH_SIZE = 250
# Fields an import keeps in step with the source. `name` is set on creation only, so a name
# staff changed survives; `quality_score` follows the heuristic unless overridden.
IMPORTED_FIELDS = (
    "mode",
    "input_price_per_mtok",
    "output_price_per_mtok",
    "cached_input_price_per_mtok",
    "context_window",
    "max_output_tokens",
    "supports_tools",
    "supports_vision",
    "supports_json",
)
UPDATED_FIELDS = (*IMPORTED_FIELDS, "quality_score", "is_deprecated", "updated_at")
SUMMARY_LINES = 20  # per section of a diff's summary


@dataclass(frozen=True, slots=True)
class ModelRef:
    """A catalog model named in a diff."""

    provider: str  # slug
    model_id: str
    name: str
    note: str = ""  # shown after the name in a diff ("not in the pricing map: ...")


@dataclass(frozen=True, slots=True)
class ModelUpdate:
    """A catalog model an import changed: field -> (old, new)."""

    provider: str
    model_id: str
    name: str
    changes: Mapping[str, tuple[Any, Any]]

    def describe(self) -> str:
        parts = [
            f"{name} {_plain(old)} -> {_plain(new)}" for name, (old, new) in self.changes.items()
        ]
        return ", ".join(parts)


@dataclass(frozen=True, slots=True)
class CatalogDiff:
    """What an import did: models added, updated, deprecated; entries skipped as malformed."""

    added: tuple[ModelRef, ...] = ()
    updated: tuple[ModelUpdate, ...] = ()
    deprecated: tuple[ModelRef, ...] = ()
    skipped: tuple[SkippedEntry, ...] = ()
    # Providers the source has no entries for: left as they were rather than all deprecated.
    unmatched_providers: tuple[str, ...] = ()
    providers: tuple[str, ...] = ()  # slugs of the providers imported
    # A sync's per-provider remarks (which list was read, why one was not) and the providers
    # it left unchanged because their models list failed, each with the reason.
    notes: tuple[str, ...] = ()
    failed_providers: tuple[str, ...] = ()

    @property
    def has_changes(self) -> bool:
        return bool(self.added or self.updated or self.deprecated)

    def counts(self) -> dict[str, int]:
        return {
            "added": len(self.added),
            "updated": len(self.updated),
            "deprecated": len(self.deprecated),
            "skipped": len(self.skipped),
        }

    def summary(self, *, limit: int = SUMMARY_LINES) -> str:
        """A readable diff: counts, then up to `limit` lines per section."""
        counts = self.counts()
        head = ", ".join(f"{n} {what}" for what, n in counts.items())
        names = ", ".join(self.providers) or "no provider"
        lines = [f"Catalog import for {names}: {head}."]
        if not self.has_changes:
            lines.append("Nothing changed.")
        sections = {
            "Not synced (left unchanged)": [f"x {line}" for line in self.failed_providers],
            "Added": [
                f"+ {m.provider} {m.name}" + (f" ({m.note})" if m.note else "") for m in self.added
            ],
            "Updated": [f"~ {m.provider} {m.name}: {m.describe()}" for m in self.updated],
            "Deprecated": [f"- {m.provider} {m.name}" for m in self.deprecated],
            "Skipped": [f"! {s.key}: {s.reason}" for s in self.skipped],
        }
        for title, section in sections.items():
            if section:
                lines.append(f"{title}:")
                lines += [f"  {line}" for line in section[:limit]]
                if len(section) > limit:
                    lines.append(f"  ... and {len(section) - limit} more")
        if self.unmatched_providers:
            lines.append(
                "No entries in the source for "
                + ", ".join(self.unmatched_providers)
                + "; left unchanged."
            )
        lines += self.notes
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.summary()


def import_pricing_map(
    *,
    source: Mapping[str, Any] | str | os.PathLike[str],
    providers: Iterable[Provider] | None = None,
    enable_new: bool = False,
    actor: Any = None,
    now: datetime | None = None,
) -> CatalogDiff:
    """Bring each provider's catalog in step with a pricing map, in one transaction.

    `providers` defaults to the platform providers whose kind has pricing-map entries (less
    those with options["catalog_sync"] = False). New models arrive disabled unless
    `enable_new`; prices, limits and capabilities follow the source; models gone from it are
    deprecated, never deleted; an unchanged catalog is not written to. Raises
    catalog.CatalogSourceError, before any write, when the source is unusable.
    """
    now = now or timezone.now()
    parsed = catalog.parse_pricing_map(catalog.load_source(source))
    targets = _catalog_providers(providers)
    entries: dict[str, list[CatalogEntry]] = defaultdict(list)
    for entry in parsed.entries:
        entries[entry.pricing_provider].append(entry)

    plan = _ImportPlan()
    with transaction.atomic():
        # Locking the providers serialises concurrent imports (the daily task and an admin
        # action) so neither inserts a model the other is inserting.
        locked = list(
            Provider.objects.select_for_update()
            .filter(pk__in=[p.pk for p in targets])
            .order_by("pk")
        )
        existing: dict[int, dict[str, CatalogModel]] = defaultdict(dict)
        for row in CatalogModel.objects.filter(provider__in=locked).order_by():
            existing[row.provider_id][row.model_id] = row
        for provider in locked:
            source_entries = entries.get(preset_for(provider.kind).pricing_provider, [])
            if source_entries:
                plan.add_provider(
                    provider, source_entries, existing[provider.pk], enable_new=enable_new, now=now
                )
            else:
                plan.unmatched.append(provider.slug)

        wanted = {preset_for(p.kind).pricing_provider for p in locked}
        diff = CatalogDiff(
            added=tuple(plan.added),
            updated=tuple(plan.updated),
            deprecated=tuple(plan.deprecated),
            skipped=tuple(parsed.skipped_for(wanted)),
            unmatched_providers=tuple(plan.unmatched),
            providers=tuple(p.slug for p in locked),
        )
        if diff.has_changes:
            CatalogModel.objects.bulk_create(plan.to_create, batch_size=CATALOG_BATCH_SIZE)
            CatalogModel.objects.bulk_update(
                plan.to_update, fields=UPDATED_FIELDS, batch_size=CATALOG_BATCH_SIZE
            )
            audit.record(
                actor=actor,
                action="catalog.imported",
                changes={**diff.counts(), "providers": list(diff.providers)},
            )
            transaction.on_commit(lambda: config_version.bump(tenant_id=None))
    logger.info("catalog.imported", extra={**diff.counts(), "providers": list(diff.providers)})
    return diff


def ensure_catalog_model(
    *, provider: Provider, model_id: str, actor: Any = None, **fields: Any
) -> tuple[CatalogModel, bool]:
    """`provider`'s model `model_id` with `fields` (created, or changed where it differs).

    Returns the row and whether it was created; an existing row that already matches is not
    written to, so seeding twice changes nothing.
    """
    row = CatalogModel.objects.filter(provider=provider, model_id=model_id).first()
    created = row is None
    if row is None:
        row = CatalogModel(provider=provider, model_id=model_id)
    changes = {}
    for name, value in fields.items():
        old = getattr(row, name)
        if created or old != value:
            changes[name] = [_plain(old), _plain(value)]
            setattr(row, name, value)
    if not created and not changes:
        return row, False
    row.full_clean()
    with transaction.atomic():
        row.save()
        audit.record(
            actor=actor,
            action="catalog_model.created" if created else "catalog_model.updated",
            target=row,
            changes={} if created else changes,
        )
        transaction.on_commit(lambda: config_version.bump(tenant_id=None))
    return row, created


@dataclass(slots=True)
class _ImportPlan:
    """The rows an import will write and the diff it reports, built before any write."""

    added: list[ModelRef] = field(default_factory=list)
    updated: list[ModelUpdate] = field(default_factory=list)
    deprecated: list[ModelRef] = field(default_factory=list)
    unmatched: list[str] = field(default_factory=list)
    to_create: list[CatalogModel] = field(default_factory=list)
    to_update: list[CatalogModel] = field(default_factory=list)

    def add_provider(
        self,
        provider: Provider,
        entries: Iterable[CatalogEntry],
        rows: Mapping[str, CatalogModel],
        *,
        enable_new: bool,
        now: datetime,
    ) -> None:
        """Plan `provider`'s changes: its source `entries` against its catalog `rows`."""
        present: set[str] = set()
        for entry in entries:
            present.add(entry.model_id)
            row = rows.get(entry.model_id)
            if row is None:
                self.to_create.append(_new_model(provider, entry, enabled=enable_new))
                self.added.append(ModelRef(provider.slug, entry.model_id, entry.name))
            elif changes := _apply_entry(row, entry):
                row.updated_at = now  # bulk_update does not apply auto_now
                self.to_update.append(row)
                self.updated.append(ModelUpdate(provider.slug, row.model_id, row.name, changes))
        for row in rows.values():
            if row.model_id not in present and not row.is_deprecated:
                row.is_deprecated = True
                row.updated_at = now
                self.to_update.append(row)
                self.deprecated.append(ModelRef(provider.slug, row.model_id, row.name))


def _catalog_providers(providers: Iterable[Provider] | None) -> list[Provider]:
    if providers is None:
        providers = [
            p
            for p in platform_providers()
            if not isinstance(p.options, dict) or p.options.get(CATALOG_SYNC_OPTION) is not False
        ]
    return [p for p in providers if preset_for(p.kind).pricing_provider]


def _new_model(provider: Provider, entry: CatalogEntry, *, enabled: bool) -> CatalogModel:
    row = CatalogModel(
        provider=provider,
        model_id=entry.model_id,
        name=entry.name,
        quality_score=catalog.default_quality(entry),
        is_enabled=enabled,
    )
    for name in IMPORTED_FIELDS:
        setattr(row, name, getattr(entry, name))
    return row


def _apply_entry(row: CatalogModel, entry: CatalogEntry) -> dict[str, tuple[Any, Any]]:
    """Copy what changed from `entry` onto `row`; the changes as field -> (old, new)."""
    changes: dict[str, tuple[Any, Any]] = {}
    wanted = {name: getattr(entry, name) for name in IMPORTED_FIELDS}
    if not row.quality_overridden:
        wanted["quality_score"] = catalog.default_quality(entry)
    if row.is_deprecated:
        wanted["is_deprecated"] = False  # back in the source: no longer deprecated
    for name, value in wanted.items():
        old = getattr(row, name)
        if old != value:
            changes[name] = (old, value)
            setattr(row, name, value)
    return changes


def _plain(value: Any) -> Any:
    """A value as JSON and people read it: Decimals without trailing zeros."""
    if isinstance(value, Decimal):
        return format(value.normalize(), "f")
    return value


def set_catalog_models_enabled(
    *, models: Iterable[CatalogModel], enabled: bool, actor: Any = None
) -> int:
    """Enable or disable catalog models for routing (the admin's bulk action); audited.

    Returns how many changed; models already in that state are not written to.
    """
    changed = [m for m in models if m.is_enabled != enabled]
    if not changed:
        return 0
    now = timezone.now()
    action = "catalog_model.enabled" if enabled else "catalog_model.disabled"
    with transaction.atomic():
        CatalogModel.objects.filter(pk__in=[m.pk for m in changed]).update(
            is_enabled=enabled, updated_at=now
        )
        for model in changed:
            model.is_enabled = enabled
            model.updated_at = now
            audit.record(
                actor=actor,
                action=action,
                target=model,
                changes={"is_enabled": [not enabled, enabled]},
            )
        transaction.on_commit(lambda: config_version.bump(tenant_id=None))
    return len(changed)


# --- catalog sync (SPEC §5): the pricing map and every provider's models list ------------------

PRICE_FIELDS = ("input_price_per_mtok", "output_price_per_mtok", "cached_input_price_per_mtok")
# Models lists are read in parallel (I/O bound, one short GET each); a platform has a handful
# of providers, so this bounds threads, not work.
LIST_THREADS = 8
# Lines per section of the diff a run stores (the admin shows it; the log gets SUMMARY_LINES).
# A first sync of the bundled snapshot adds ~1,000 models for OpenAI and Anthropic together.
RUN_DIFF_LINES = 2_000
UNPRICED_NOTE = "not in the pricing map: zero prices until staff set them"
USABLE_KEY_STATUSES = (KeyStatus.ACTIVE, KeyStatus.PENDING)
# Kinds whose models list is public: read even without a platform key.
KEYLESS_LIST_KINDS = frozenset({ProviderKind.OPENROUTER})
LISTED_PROTOCOLS = frozenset({WireProtocol.OPENAI, WireProtocol.ANTHROPIC})


@dataclass(frozen=True, slots=True)
class _ProviderSource:
    """What a sync read for one provider: its models list, or why there is none."""

    listing: catalog_sources.ModelsListing | None = None
    not_listed: str = ""  # no list was asked for (why): the pricing map alone applies
    error: str = ""  # the list failed or is malformed: the provider is left unchanged

    def describe(self) -> str:
        if self.listing is not None:
            return f"{len(self.listing.ids)} models"
        return "failed" if self.error else f"not read: {self.not_listed}"


def sync_catalog(
    *,
    actor: Any = None,
    now: datetime | None = None,
    fetch: catalog_sources.Fetch | None = None,
) -> CatalogSyncRun:
    """Bring the catalog in step with the pricing map and each provider's models list.

    Reads every source first (the map from SWITCHYARD_CATALOG_SOURCE_URL or the bundled
    snapshot; the models list of each platform provider not opted out of catalog sync), then
    applies all changes in one transaction and records a CatalogSyncRun with a readable diff:

    * A provider whose list was read: listed models unknown to the catalog arrive disabled,
      priced from OpenRouter's list or the pricing map, else at zero with a note; catalog
      models it no longer lists (nor an alias of) are deprecated; prices and limits follow
      the sources, and each price change is kept as a CatalogPriceChange.
    * A provider whose list was not asked for (no platform key, disabled, a protocol or kind
      without a usable list): the pricing map alone applies, as `import_pricing_map` does.
    * A provider whose list failed or is malformed is left unchanged: status partial.
    * An unusable pricing map changes nothing: status failed, with the reason. When fetching
      it failed for a passing reason (timeout, 429, 5xx) the failed run is recorded and
      catalog_sources.CatalogSourceUnavailable raised, for the task to retry.

    Nothing is ever deleted, and new models are never enabled. A second run over the same
    sources writes no catalog row. The run is audited once (catalog.imported) and the config
    version bumped on commit when the catalog changed.
    """
    started_at = now or timezone.now()
    clock = time.perf_counter()
    fetch = fetch or catalog_sources.guarded_fetch()
    triggered_by = _actor_label(actor)
    try:
        pricing = catalog_sources.load_pricing_map(
            url=settings.SWITCHYARD_CATALOG_SOURCE_URL,
            path=settings.SWITCHYARD_CATALOG_SNAPSHOT,
            fetch=fetch,
        )
    except CatalogSourceError as exc:
        run = _record_failed_run(
            started_at=started_at,
            clock=clock,
            triggered_by=triggered_by,
            source=catalog_sources.describe_pricing_source(
                url=settings.SWITCHYARD_CATALOG_SOURCE_URL,
                path=settings.SWITCHYARD_CATALOG_SNAPSHOT,
            ),
            error=str(exc),
        )
        if isinstance(exc, catalog_sources.CatalogSourceUnavailable):
            exc.run = run
            raise
        return run
    try:
        return _apply_sync(
            pricing=pricing,
            fetch=fetch,
            actor=actor,
            started_at=started_at,
            clock=clock,
            triggered_by=triggered_by,
        )
    except Exception as exc:
        try:
            _record_failed_run(
                started_at=started_at,
                clock=clock,
                triggered_by=triggered_by,
                source=pricing.description,
                error=f"The sync stopped on an unexpected error ({type(exc).__name__}): "
                f"{str(exc)[:300]}",
            )
        except Exception:  # the database itself may be what failed: keep the first error
            logger.exception("catalog.sync_not_recorded")
        raise


def _apply_sync(
    *,
    pricing: catalog_sources.PricingMap,
    fetch: catalog_sources.Fetch,
    actor: Any,
    started_at: datetime,
    clock: float,
    triggered_by: str,
) -> CatalogSyncRun:
    targets = _sync_providers()
    sources = _read_models_lists(targets, pricing, fetch)
    with transaction.atomic():
        # Locked like an import: the daily task and the admin button never interleave.
        locked = list(
            Provider.objects.select_for_update()
            .filter(pk__in=[p.pk for p in targets])
            .order_by("pk")
        )
        existing: dict[int, dict[str, CatalogModel]] = defaultdict(dict)
        for row in CatalogModel.objects.filter(provider__in=locked).order_by():
            existing[row.provider_id][row.model_id] = row
        plan = _SyncPlan()
        for provider in locked:
            plan.add_source(
                provider, pricing, sources[provider.pk], existing[provider.pk], now=started_at
            )
        diff = plan.diff(pricing)
        status = (
            CatalogSyncRun.Status.PARTIAL if diff.failed_providers else CatalogSyncRun.Status.OK
        )
        if diff.has_changes:
            CatalogModel.objects.bulk_create(plan.to_create, batch_size=CATALOG_BATCH_SIZE)
            CatalogModel.objects.bulk_update(
                plan.to_update, fields=UPDATED_FIELDS, batch_size=CATALOG_BATCH_SIZE
            )
        source = "; ".join(
            [
                pricing.description,
                "models lists: "
                + (", ".join(f"{p.slug} ({sources[p.pk].describe()})" for p in locked) or "none"),
            ]
        )
        run = CatalogSyncRun(
            started_at=started_at,
            finished_at=started_at + timedelta(seconds=time.perf_counter() - clock),
            status=status,
            triggered_by=triggered_by,
            source=source,
            diff=diff.summary(limit=RUN_DIFF_LINES),
            error="\n".join(diff.failed_providers),
            **diff.counts(),
        )
        run.full_clean()
        run.save()
        CatalogPriceChange.objects.bulk_create(
            plan.price_changes(run=run, now=started_at), batch_size=CATALOG_BATCH_SIZE
        )
        audit.record(
            actor=actor,
            action="catalog.imported",
            target=run,
            changes={
                **diff.counts(),
                "providers": list(diff.providers),
                "status": status,
                "not_synced": [line.split(":", 1)[0] for line in diff.failed_providers],
            },
        )
        if diff.has_changes:
            transaction.on_commit(lambda: config_version.bump(tenant_id=None))
    logger.log(
        logging.WARNING if diff.failed_providers else logging.INFO,
        "catalog.synced #%s %s\n%s",
        run.pk,
        status,
        diff.summary(),
        extra={
            "run_id": run.pk,
            "status": status,
            **diff.counts(),
            "providers": list(diff.providers),
        },
    )
    return run


def _record_failed_run(
    *, started_at: datetime, clock: float, triggered_by: str, source: str, error: str
) -> CatalogSyncRun:
    """A run that changed nothing, and why; logged as a warning."""
    run = CatalogSyncRun.objects.create(
        started_at=started_at,
        finished_at=started_at + timedelta(seconds=time.perf_counter() - clock),
        status=CatalogSyncRun.Status.FAILED,
        triggered_by=triggered_by,
        source=source,
        diff=f"Nothing changed: {error}",
        error=error,
    )
    logger.warning(
        "catalog.sync_failed #%s: %s", run.pk, error, extra={"run_id": run.pk, "status": run.status}
    )
    return run


def _actor_label(actor: Any) -> str:
    if actor is not None and getattr(actor, "is_authenticated", False):
        return actor.get_username()
    return "system"


def _sync_providers() -> list[Provider]:
    """Platform providers not opted out of catalog sync (options["catalog_sync"] = False)."""
    return [
        p
        for p in platform_providers().order_by("pk")
        if not isinstance(p.options, dict) or p.options.get(CATALOG_SYNC_OPTION) is not False
    ]


def _not_listed_reason(provider: Provider, *, has_key: bool) -> str:
    """Why `provider`'s models list is not asked for ("" when it is)."""
    if not provider.is_enabled:
        return "the provider is disabled"
    if provider.kind == ProviderKind.AZURE_OPENAI:
        return "Azure deployments are named by staff, not listed"
    if provider.protocol not in LISTED_PROTOCOLS:
        return f"no models list for the {provider.protocol} protocol"
    needs_key = preset_for(provider.kind).auth != "none" and provider.kind not in KEYLESS_LIST_KINDS
    if needs_key and not has_key:
        return "no platform key"
    return ""


def _read_models_lists(
    providers: list[Provider], pricing: catalog_sources.PricingMap, fetch: catalog_sources.Fetch
) -> dict[int, _ProviderSource]:
    """Each provider's models list, read in parallel before any row is locked."""
    secrets: dict[int, str] = {}
    for key in (
        platform_keys()
        .filter(provider__in=providers, is_enabled=True, status__in=USABLE_KEY_STATUSES)
        .order_by("provider_id", "-created_at")
    ):
        secrets.setdefault(key.provider_id, key.reveal_secret())
    sources: dict[int, _ProviderSource] = {}
    jobs: dict[int, dict[str, Any]] = {}
    for provider in providers:
        reason = _not_listed_reason(provider, has_key=provider.pk in secrets)
        if reason:
            sources[provider.pk] = _ProviderSource(not_listed=reason)
            continue
        target = Target(
            protocol=provider.protocol,
            kind=provider.kind,
            base_url=provider.base_url,
            api_key=secrets.get(provider.pk, ""),
            model_id="",
            options=dict(provider.options or {}),
        )
        jobs[provider.pk] = {
            "target": target,
            "openrouter": provider.kind == ProviderKind.OPENROUTER,
            "known": pricing.entries_for(preset_for(provider.kind).pricing_provider),
            "fetch": fetch,
        }
    if jobs:
        with ThreadPoolExecutor(max_workers=min(LIST_THREADS, len(jobs))) as pool:
            futures = {
                pk: pool.submit(catalog_sources.list_models, job.pop("target"), **job)
                for pk, job in jobs.items()
            }
            for pk, future in futures.items():
                try:
                    sources[pk] = _ProviderSource(listing=future.result())
                except catalog_sources.ModelsListError as exc:
                    sources[pk] = _ProviderSource(error=str(exc))
    return sources


@dataclass(slots=True)
class _SyncPlan(_ImportPlan):
    """An import plan over several sources: lists, OpenRouter prices and the pricing map."""

    synced: list[str] = field(default_factory=list)  # slugs whose sources applied
    failed: list[str] = field(default_factory=list)  # "slug: why", left unchanged
    notes: list[str] = field(default_factory=list)
    skipped: list[SkippedEntry] = field(default_factory=list)  # malformed list items
    pricing_providers: set[str] = field(default_factory=set)
    provider_ids: dict[str, int] = field(default_factory=dict)  # slug -> pk

    def add_source(
        self,
        provider: Provider,
        pricing: catalog_sources.PricingMap,
        source: _ProviderSource,
        rows: Mapping[str, CatalogModel],
        *,
        now: datetime,
    ) -> None:
        if source.error:
            self.failed.append(f"{provider.slug}: {source.error}")
            return
        pricing_provider = preset_for(provider.kind).pricing_provider
        entries = pricing.entries_for(pricing_provider)
        self.synced.append(provider.slug)
        self.provider_ids[provider.slug] = provider.pk
        if pricing_provider:
            self.pricing_providers.add(pricing_provider)
        listing = source.listing
        if listing is None:
            self.notes.append(
                f"{provider.slug}: models list not read ({source.not_listed}); "
                "the pricing map alone applies."
            )
            if entries:
                self.add_provider(provider, entries.values(), rows, enable_new=False, now=now)
            else:
                self.unmatched.append(provider.slug)
            return
        self.skipped += [
            SkippedEntry(f"{provider.slug} {s.key}", s.reason, s.pricing_provider)
            for s in listing.skipped
        ]
        self.add_listed(
            provider,
            listing,
            {**entries, **listing.entries},  # OpenRouter's own prices are the fresher
            unpriceable=pricing.unroutable_for(pricing_provider) | listing.unreadable,
            rows=rows,
            now=now,
        )

    def add_listed(
        self,
        provider: Provider,
        listing: catalog_sources.ModelsListing,
        entries: Mapping[str, CatalogEntry],
        *,
        unpriceable: set[str] | frozenset[str],
        rows: Mapping[str, CatalogModel],
        now: datetime,
    ) -> None:
        """Plan `provider`'s changes from its models list: the list decides what is served,
        the entries what it costs."""
        served = catalog_sources.presence(listing.ids)
        wanted = {*listing.ids, *(m for m in entries if served(m)), *(m for m in rows if served(m))}
        for model_id in sorted(wanted):
            entry = entries.get(model_id)
            row = rows.get(model_id)
            if row is None:
                if entry is not None:
                    self.to_create.append(_new_model(provider, entry, enabled=False))
                    self.added.append(ModelRef(provider.slug, model_id, entry.name))
                elif model_id not in unpriceable:
                    self._add_unpriced(provider, model_id)
                continue
            changes = _apply_entry(row, entry) if entry is not None else _revive(row)
            if changes:
                row.updated_at = now
                self.to_update.append(row)
                self.updated.append(ModelUpdate(provider.slug, row.model_id, row.name, changes))
        for row in rows.values():
            if not served(row.model_id) and not row.is_deprecated:
                row.is_deprecated = True
                row.updated_at = now
                self.to_update.append(row)
                self.deprecated.append(ModelRef(provider.slug, row.model_id, row.name))

    def _add_unpriced(self, provider: Provider, model_id: str) -> None:
        """A listed model no source prices: added at zero prices (disabled), noted."""
        pricing_provider = preset_for(provider.kind).pricing_provider
        name = (
            catalog.client_name(
                pricing_provider=pricing_provider,
                key=f"{pricing_provider}/{model_id}",
                model_id=model_id,
            )
            if pricing_provider
            else model_id
        )
        if len(name) > catalog.MAX_NAME_CHARS:
            self.skipped.append(
                SkippedEntry(
                    f"{provider.slug} {model_id}",
                    f"the name is longer than {catalog.MAX_NAME_CHARS} characters",
                )
            )
            return
        row = CatalogModel(
            provider=provider,
            model_id=model_id,
            name=name,
            mode=ModelMode.EMBEDDING if "embed" in model_id.lower() else ModelMode.CHAT,
            is_enabled=False,
        )
        row.quality_score = catalog.default_quality(row)
        self.to_create.append(row)
        self.added.append(ModelRef(provider.slug, model_id, name, UNPRICED_NOTE))

    def diff(self, pricing: catalog_sources.PricingMap) -> CatalogDiff:
        return CatalogDiff(
            added=tuple(self.added),
            updated=tuple(self.updated),
            deprecated=tuple(self.deprecated),
            skipped=(*pricing.parsed.skipped_for(self.pricing_providers), *self.skipped),
            unmatched_providers=tuple(self.unmatched),
            providers=tuple(self.synced),
            notes=tuple(self.notes),
            failed_providers=tuple(self.failed),
        )

    def price_changes(self, *, run: CatalogSyncRun, now: datetime) -> list[CatalogPriceChange]:
        """History rows for the updates that changed a price (old and new, all three)."""
        rows = {(r.provider_id, r.model_id): r for r in self.to_update}
        changes = []
        for update in self.updated:
            if not any(f in update.changes for f in PRICE_FIELDS):
                continue
            row = rows[(self.provider_ids[update.provider], update.model_id)]
            old = {f: update.changes.get(f, (getattr(row, f),))[0] for f in PRICE_FIELDS}
            changes.append(
                CatalogPriceChange(
                    catalog_model=row,
                    sync_run=run,
                    changed_at=now,
                    **{f"old_{f}": old[f] for f in PRICE_FIELDS},
                    **{f"new_{f}": getattr(row, f) for f in PRICE_FIELDS},
                )
            )
        return changes


def _revive(row: CatalogModel) -> dict[str, tuple[Any, Any]]:
    """A deprecated model listed again, with no source to price it: only un-deprecate it."""
    if not row.is_deprecated:
        return {}
    row.is_deprecated = False
    return {"is_deprecated": (True, False)}


# --- LLM settings (the power-level page, the API and the admin write through here) ------------

LLM_SETTINGS_FIELDS = frozenset(
    {
        "power_level",
        "preferred_providers",
        "preferred_models",
        "auto_failover",
        "default_temperature",
        "default_max_tokens",
        "system_prompt",
    }
)
# Characters of a system prompt kept in the audit log: enough to recognise it.
AUDITED_PROMPT_CHARS = 80


def set_llm_settings(
    *, tenant: Tenant, end_user: EndUser | None = None, actor: Any, **fields: Any
) -> LLMSettings:
    """Change the tenant's settings, or `end_user`'s override when given; empty values inherit.

    `preferred_providers` are Provider rows the tenant may use; `preferred_models` are catalog
    model names. Raises ValidationError (by field) and saves nothing when a value is invalid.
    Audited; the gateway applies the change to the next request (config version bump).
    """
    unknown = set(fields) - LLM_SETTINGS_FIELDS
    if unknown:
        raise TypeError(f"Unknown LLM settings fields: {', '.join(sorted(unknown))}.")
    if end_user is not None and end_user.tenant_id != tenant.pk:
        raise ValidationError("This end user belongs to another tenant.")
    providers = fields.pop("preferred_providers", None)
    if "preferred_models" in fields:
        fields["preferred_models"] = _known_model_names(tenant, fields["preferred_models"])
    if providers is not None:
        providers = _usable_providers(tenant, providers)
    with transaction.atomic():
        row = (
            LLMSettings.objects.select_for_update()
            .filter(tenant=tenant, end_user=end_user)
            .prefetch_related("preferred_providers")
            .first()
        ) or LLMSettings(tenant=tenant, end_user=end_user)
        created = row.pk is None
        changes: dict[str, list[Any]] = {}
        for name, value in fields.items():
            old = getattr(row, name)
            if old != value:
                changes[name] = [_audited(name, old), _audited(name, value)]
                setattr(row, name, value)
        if providers is not None:
            old_slugs = sorted(p.slug for p in row.preferred_providers.all()) if row.pk else []
            new_slugs = sorted(p.slug for p in providers)
            if old_slugs != new_slugs:
                changes["preferred_providers"] = [old_slugs, new_slugs]
        if not changes:
            return row
        row.full_clean()
        row.save()
        if "preferred_providers" in changes:
            row.preferred_providers.set(providers)
        audit.record(
            actor=actor,
            tenant=tenant,
            action="llm_settings.created" if created else "llm_settings.updated",
            target=row,
            changes=changes,
        )
        transaction.on_commit(lambda: config_version.bump(tenant_id=tenant.pk))
    logger.info(
        "llm_settings.saved",
        extra={"tenant_id": tenant.pk, "end_user_id": getattr(end_user, "pk", None)},
    )
    return row


def _known_model_names(tenant: Tenant, names: Iterable[str]) -> list[str]:
    """`names` without blanks and repeats; ValidationError when one is not a catalog model
    of a provider the tenant may use."""
    wanted = list(dict.fromkeys(n.strip() for n in names if n and n.strip()))
    missing = routing_selectors.unknown_model_names(tenant=tenant, names=wanted) if wanted else []
    if missing:
        raise ValidationError({"preferred_models": unknown_models_message(missing)})
    return wanted


def unknown_models_message(names: Sequence[str]) -> str:
    """What to tell someone who named models the catalog does not route."""
    return (
        f"Unknown model{'s' if len(names) > 1 else ''}: {', '.join(names)}. "
        "Use catalog model names, as GET /v1/models lists them."
    )


def _usable_providers(tenant: Tenant, providers: Iterable[Provider]) -> list[Provider]:
    """`providers`, each one the tenant may use (a platform provider or its own endpoint)."""
    chosen = list(dict.fromkeys(providers))
    allowed = set(
        providers_for(tenant=tenant)
        .filter(pk__in=[p.pk for p in chosen])
        .values_list("pk", flat=True)
    )
    if any(p.pk not in allowed for p in chosen):
        raise ValidationError({"preferred_providers": "Choose providers this tenant can use."})
    return chosen


def _audited(name: str, value: Any) -> Any:
    """A settings value as the audit log keeps it: prompts shortened, the rest as JSON."""
    if name == "system_prompt" and value:
        return value[:AUDITED_PROMPT_CHARS] + ("…" if len(value) > AUDITED_PROMPT_CHARS else "")
    return _plain(value)


# --- staff's hand edits through the management API: catalog models, routing policies --------

# What staff change on a catalog model by hand; imports keep the rest in step with sources.
# Enabling and disabling is set_catalog_models_enabled's (the admin's bulk action too).
EDITABLE_MODEL_FIELDS = frozenset({*PRICE_FIELDS, "quality_score", "quality_overridden"})
EDITABLE_POLICY_FIELDS = frozenset(
    {
        "max_price_per_1k",
        "weight_cost",
        "weight_latency",
        "weight_quality",
        "max_latency_ms",
        "preferred_provider_kinds",
        "description",
    }
)


def update_catalog_model(
    *, model: CatalogModel, actor: Any, now: datetime | None = None, **fields: Any
) -> CatalogModel:
    """Change a catalog model's prices or quality score; audited, config bumped.

    Setting `quality_score` marks it overridden (imports leave it alone); clearing
    `quality_overridden` hands it back to the heuristic at once. A price change is kept in
    the price history like a sync's. Raises ValidationError and saves nothing when invalid.
    """
    unknown = set(fields) - EDITABLE_MODEL_FIELDS
    if unknown:
        raise TypeError(f"Unknown catalog model fields: {', '.join(sorted(unknown))}.")
    now = now or timezone.now()
    if "quality_score" in fields:
        fields["quality_overridden"] = True
    old_prices = {f: getattr(model, f) for f in PRICE_FIELDS}
    changes: dict[str, list[Any]] = {}
    for name, value in fields.items():
        old = getattr(model, name)
        if old != value:
            changes[name] = [_plain(old), _plain(value)]
            setattr(model, name, value)
    if not model.quality_overridden and (
        "quality_overridden" in changes or any(f in changes for f in PRICE_FIELDS)
    ):
        quality = catalog.default_quality(model)
        if quality != model.quality_score:
            changes["quality_score"] = [model.quality_score, quality]
            model.quality_score = quality
    if not changes:
        return model
    model.full_clean()
    with transaction.atomic():
        model.save(update_fields=[*changes, "updated_at"])
        if any(f in changes for f in PRICE_FIELDS):
            CatalogPriceChange.objects.create(
                catalog_model=model,
                sync_run=None,
                changed_at=now,
                **{f"old_{f}": old_prices[f] for f in PRICE_FIELDS},
                **{f"new_{f}": getattr(model, f) for f in PRICE_FIELDS},
            )
        audit.record(actor=actor, action="catalog_model.updated", target=model, changes=changes)
        transaction.on_commit(lambda: config_version.bump(tenant_id=None))
    return model


def update_routing_policy(*, policy: RoutingPolicy, actor: Any, **fields: Any) -> RoutingPolicy:
    """Change a power level's price cap, weights or preferred provider kinds; audited,
    config bumped. Raises ValidationError and saves nothing when a value is invalid."""
    unknown = set(fields) - EDITABLE_POLICY_FIELDS
    if unknown:
        raise TypeError(f"Unknown routing policy fields: {', '.join(sorted(unknown))}.")
    if "preferred_provider_kinds" in fields:
        kinds = list(dict.fromkeys(fields["preferred_provider_kinds"]))
        invalid = sorted(set(kinds) - set(ProviderKind.values))
        if invalid:
            raise ValidationError(
                {"preferred_provider_kinds": f"Unknown provider kinds: {', '.join(invalid)}."}
            )
        fields["preferred_provider_kinds"] = kinds
    changes: dict[str, list[Any]] = {}
    for name, value in fields.items():
        old = getattr(policy, name)
        if old != value:
            changes[name] = [_plain(old), _plain(value)]
            setattr(policy, name, value)
    if not changes:
        return policy
    policy.full_clean()
    with transaction.atomic():
        policy.save(update_fields=[*changes])
        audit.record(actor=actor, action="routing_policy.updated", target=policy, changes=changes)
        transaction.on_commit(lambda: config_version.bump(tenant_id=None))
    return policy
