"""Writes for routing: the model catalog. Every change is audited and bumps the config version."""

from __future__ import annotations

import logging
import os
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

from django.db import transaction
from django.utils import timezone

from providers.models import Provider
from providers.presets import preset_for
from providers.selectors import platform_providers
from routing import catalog
from routing.catalog import CatalogEntry, SkippedEntry
from routing.models import CatalogModel
from tenants import audit, config_version

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
            "Added": [f"+ {m.provider} {m.name}" for m in self.added],
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
