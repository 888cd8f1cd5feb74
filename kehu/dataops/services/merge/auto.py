"""Automatic merges and the review decisions on candidate pairs."""

from __future__ import annotations

import logging
from typing import Any

from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext as _

from kehu.core.audit import audit_record
from kehu.core.errors import DomainError, ValidationFailed
from kehu.core.permissions import ensure_permitted
from kehu.customers.models import Customer
from kehu.dataops.models import DuplicatePair, Merge, PairStatus
from kehu.dataops.services.merge._common import PERMISSION_CHANGE, MergeRefused, visible_customers
from kehu.dataops.services.merge.apply import customers_merge
from kehu.dataops.services.merge.fields import (
    CHOOSABLE_FIELDS,
    IDENTITY_FIELDS,
    active_definitions,
    choosable_keys,
    conflicting_fields,
)

logger = logging.getLogger(__name__)


def auto_merge_conflicts(customers: list[Customer]) -> list[str]:
    """Fields that stop an automatic merge: the person's identity fields and custom fields that differ.

    Bookkeeping fields (owner, department, source, status, notes, consent) may differ: the
    survivor keeps its own and fills only what it lacks.
    """
    keys = [key for key in choosable_keys(customers, active_definitions()) if key not in CHOOSABLE_FIELDS]
    return conflicting_fields(customers, [*IDENTITY_FIELDS, *keys])


def auto_merge(*, actor: Any, threshold: float) -> list[Merge]:
    """Merge every open pair scoring at least ``threshold`` whose customers do not conflict.

    A pair the scan found conflicting, or whose identity or custom fields now differ, is left
    for a person. The older record survives. Each merge is its own transaction: one refusal
    does not undo the others. Pairs are taken best score first.
    """
    ensure_permitted(actor, PERMISSION_CHANGE)
    ensure_permitted(actor, "customers.change")
    if not 0 < float(threshold) <= 1:
        raise ValidationFailed.for_field("threshold", _("The threshold is a number above 0 and at most 1."))
    visible = visible_customers(actor, Customer.objects.all()).values("pk")
    candidates = list(
        DuplicatePair.objects.filter(
            status=PairStatus.OPEN, score__gte=threshold, customer_a__in=visible, customer_b__in=visible
        )
        .order_by("-score", "pk")
        .values_list("pk", flat=True)
    )
    merges: list[Merge] = []
    for pair_id in candidates:
        pair = DuplicatePair.objects.filter(pk=pair_id, status=PairStatus.OPEN).first()
        if pair is None or pair.conflicts:
            continue  # merged along with an earlier pair, or the scan saw conflicting fields
        customers = list(
            Customer.objects.filter(pk__in=[pair.customer_a_id, pair.customer_b_id]).order_by("pk")
        )
        if len(customers) != 2 or auto_merge_conflicts(customers):
            continue
        try:
            merges.append(
                customers_merge(
                    actor=actor,
                    survivor_id=customers[0].pk,
                    merged_ids=[customers[1].pk],
                    score=pair.score,
                    automatic=True,
                )
            )
        except DomainError as error:
            # Left open for a person, who will see the same refusal when merging by hand.
            logger.info("auto-merge of pair %s refused: %s", pair_id, error.message)
    return merges


@transaction.atomic
def pair_dismiss(*, actor: Any, pair: DuplicatePair) -> DuplicatePair:
    """Mark a candidate pair "not duplicates": it leaves the queue and later scans keep it dismissed."""
    ensure_permitted(actor, PERMISSION_CHANGE)
    locked = DuplicatePair.objects.select_for_update().get(pk=pair.pk)
    if locked.status != PairStatus.OPEN:
        raise MergeRefused(_("This pair was already reviewed."))
    locked.status = PairStatus.DISMISSED
    locked.resolved_by = actor
    locked.resolved_at = timezone.now()
    locked.save(update_fields=["status", "resolved_by", "resolved_at"])
    audit_record(
        actor=actor,
        action="duplicate.dismiss",
        target=locked,
        after={"customers": [locked.customer_a_id, locked.customer_b_id], "score": locked.score},
    )
    return locked
