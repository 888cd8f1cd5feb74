"""Large SQLite imports drop the random-key lookup indexes and build them at the end.

While they are gone the import matches through its in-memory key arrays: it must store exactly
what a run with the indexes stores, see customers others create between its batches, and a run
killed before the end must not leave the database without them.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from django.core.management import call_command
from django.db import IntegrityError, connection

from kehu.core.crypto import blind_index
from kehu.customers.bulk import CUSTOMER_COLUMNS, CustomerBatchPreparer, PreparedBatch
from kehu.customers.models import ID_NUMBER_INDEX_PURPOSE, PHONE_INDEX_PURPOSE, Customer, CustomerPhone
from kehu.customers.search import SEARCH_AUTOMERGE_BULK, SEARCH_AUTOMERGE_DEFAULT, search_automerge
from kehu.customers.services import customer_create
from kehu.dataops.models import ImportedRecord, ImportJob, ImportStatus
from kehu.dataops.services.importing import deferred_indexes, jobs
from kehu.dataops.services.importing.customer_staging import CustomerStage, _remember_created
from kehu.dataops.services.importing.deferred_indexes import MARKER, MatchKeys, key_prefixes, shared_slots
from kehu.dataops.services.importing.pipeline import import_run
from tests.dataops import files

# sqlite_only (autouse): indexes are deferred only by staged imports, on SQLite.
from tests.dataops.test_import_staging import HEADERS, _rows, _snapshot, sqlite_only  # noqa: F401

# Outside a transaction: the only place an import stages its rows (and may defer indexes).
pytestmark = pytest.mark.django_db(transaction=True)

DEFERRED_NAMES = [name for _model, name in deferred_indexes.DEFERRED_INDEXES]


def _index_statements() -> dict[str, str]:
    with connection.cursor() as cursor:
        cursor.execute("SELECT name, sql FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL")
        return {name: sql for name, sql in cursor.fetchall() if name in DEFERRED_NAMES}


def _phone_index(mobile: str) -> str:
    return blind_index(f"+86{mobile}", purpose=PHONE_INDEX_PURPOSE)


def _id_index(number: str) -> str:
    return blind_index(number, purpose=ID_NUMBER_INDEX_PURPOSE)


def _deferring_rows() -> list[list[str]]:
    rows = _rows()
    # Row 8 (file numbering) updates the existing customer, giving it an ID number; row 20, in a
    # later batch, has that ID number and a new phone: it must find the same customer.
    rows[6][3] = "11010519491231002X"
    rows[8][3] = ""
    rows[18][3] = "11010519491231002X"
    # Two rows of the last batch share an ID number no customer has yet.
    rows[20][3] = rows[22][3] = "440305198511060010"
    return rows


def _import(tmp_path: Path, name: str, rows: list[list[str]], **run: Any) -> ImportJob:
    path = files.write_csv(tmp_path, name, [HEADERS, *rows])
    job = jobs.import_create(actor=None, kind="customers", source=path, file_name=name)
    job = jobs.import_configure(actor=None, job=job, match_mode="fill_empty")
    return import_run(job=job, workers=0, batch_rows=10, **run)


def test_a_deferred_run_stores_what_a_run_with_the_indexes_stores(tmp_path: Path, settings: Any) -> None:
    existing = customer_create(actor=None, data={"name": "老客户", "phones": [{"number": "13912345678"}]})
    statements = _index_statements()
    assert sorted(statements) == sorted(DEFERRED_NAMES)
    missing_during_run: list[set[str]] = []
    automerge_during_run: list[int] = []

    def watch(job: ImportJob) -> None:
        missing_during_run.append(set(DEFERRED_NAMES) - set(_index_statements()))
        automerge_during_run.append(search_automerge())

    settings.IMPORT_DEFER_INDEXES_MIN_ROWS = 1
    deferred_job = _import(tmp_path, "deferred.csv", _deferring_rows(), on_progress=watch)
    deferred = _snapshot(deferred_job)

    assert missing_during_run == [set(DEFERRED_NAMES)] * 3
    assert _index_statements() == statements
    # The search tables merge less eagerly while the indexes are away, as usual after.
    assert automerge_during_run == [SEARCH_AUTOMERGE_BULK] * 3
    assert search_automerge() == SEARCH_AUTOMERGE_DEFAULT
    deferred_job.refresh_from_db()
    assert MARKER not in deferred_job.options
    jobs.import_undo(actor=None, job=deferred_job)
    assert list(Customer.objects.values_list("pk", flat=True)) == [existing.pk]

    settings.IMPORT_DEFER_INDEXES_MIN_ROWS = 10**9
    missing_during_run.clear()
    kept = _snapshot(_import(tmp_path, "kept.csv", _deferring_rows(), on_progress=watch))

    assert missing_during_run == [set()] * 3
    assert deferred == kept
    # The cases the key arrays must answer: an existing customer by phone, the same email as a
    # row of an earlier batch, and an ID number an earlier batch gave the existing customer.
    assert deferred["rows"][8][0] == "updated"
    assert (15, "The same email address as row 4 of this file.") in deferred["errors"]
    assert Customer.objects.filter(id_number_index=_id_index("11010519491231002X")).count() == 1
    # In-batch duplicates: a phone (rows 3 and 6) and an ID number (rows 22 and 24).
    assert (6, "The same phone number as row 3 of this file.") in deferred["errors"]
    assert (24, "The same ID number as row 22 of this file.") in deferred["errors"]
    assert Customer.objects.filter(id_number_index=_id_index("440305198511060010")).count() == 1


def test_a_deferred_run_matches_customers_created_between_its_batches(tmp_path: Path, settings: Any) -> None:
    customer_create(actor=None, data={"name": "老客户", "phones": [{"number": "13912345678"}]})
    rows = _rows()
    late_phone = rows[22][1]  # file row 24, in the third batch
    created_by_clerk: list[int] = []

    def clerk_creates_a_customer(job: ImportJob) -> None:
        if job.rows_processed == 10:
            clerk = customer_create(actor=None, data={"name": "店员录入", "phones": [{"number": late_phone}]})
            created_by_clerk.append(clerk.pk)

    settings.IMPORT_DEFER_INDEXES_MIN_ROWS = 1
    job = _import(tmp_path, "late.csv", rows, on_progress=clerk_creates_a_customer)

    assert job.status == ImportStatus.DONE
    holders = set(
        CustomerPhone.objects.filter(number_index=_phone_index(late_phone)).values_list(
            "customer_id", flat=True
        )
    )
    assert holders == set(created_by_clerk)
    record = ImportedRecord.objects.get(job=job, row_number=24)
    assert (record.action, record.object_id) == ("updated", created_by_clerk[0])


def test_a_deferred_run_that_fails_restores_the_indexes(tmp_path: Path, settings: Any) -> None:
    statements = _index_statements()
    rows = [[*row[:3], "", "", "", "", f"EXT-{number}"] for number, row in enumerate(files.customer_rows(25))]
    rows[17][7] = rows[3][7]  # an external id taken by a row of the first batch: the database refuses
    missing_during_run: list[set[str]] = []
    settings.IMPORT_DEFER_INDEXES_MIN_ROWS = 1

    with pytest.raises(IntegrityError):
        _import(
            tmp_path,
            "bad.csv",
            rows,
            on_progress=lambda job: missing_during_run.append(set(DEFERRED_NAMES) - set(_index_statements())),
        )

    assert missing_during_run == [set(DEFERRED_NAMES)]
    assert _index_statements() == statements
    assert not ImportJob.objects.filter(options__has_key=MARKER).exists()
    assert Customer.objects.count() == 10


def test_indexes_a_killed_run_dropped_come_back_before_migrate_and_before_the_next_import(
    tmp_path: Path,
) -> None:
    statements = _index_statements()
    killed = jobs.import_create(
        actor=None,
        kind="customers",
        source=files.write_csv(tmp_path, "a.csv", [HEADERS, *_rows()]),
        file_name="a.csv",
    )
    # What a run killed after dropping them leaves behind.
    assert sorted(deferred_indexes.defer_indexes(killed)) == sorted(DEFERRED_NAMES)
    assert _index_statements() == {}
    assert search_automerge() == SEARCH_AUTOMERGE_BULK

    call_command("migrate", verbosity=0)

    assert _index_statements() == statements
    assert search_automerge() == SEARCH_AUTOMERGE_DEFAULT
    killed.refresh_from_db()
    assert MARKER not in killed.options

    deferred_indexes.defer_indexes(killed)
    job = _import(tmp_path, "b.csv", _rows())  # below the threshold: it keeps them, after restoring

    assert job.status == ImportStatus.DONE
    assert _index_statements() == statements
    assert deferred_indexes.restore_deferred_indexes() == []


def test_the_indexes_are_sorted_with_a_small_cache_and_helper_threads_then_the_settings_return(
    tmp_path: Path,
) -> None:
    killed = jobs.import_create(
        actor=None,
        kind="customers",
        source=files.write_csv(tmp_path, "a.csv", [HEADERS, *_rows()]),
        file_name="a.csv",
    )
    deferred_indexes.defer_indexes(killed)
    with connection.cursor() as cursor:
        cursor.execute("PRAGMA cache_size = -16384")
    pragmas = ("cache_size", "threads", "temp_store")

    def current() -> dict[str, int]:
        # The driver's own connection: the wrapper below must not see these.
        return {name: connection.connection.execute(f"PRAGMA {name}").fetchone()[0] for name in pragmas}

    before = current()
    while_building: list[dict[str, int]] = []

    def watch(execute: Any, sql: str, params: Any, many: bool, context: Any) -> Any:
        if sql.startswith("CREATE INDEX"):
            while_building.append(current())
        return execute(sql, params, many, context)

    with connection.execute_wrapper(watch):
        assert sorted(deferred_indexes.restore_deferred_indexes()) == sorted(DEFERRED_NAMES)

    assert len(while_building) == len(DEFERRED_NAMES)
    assert all(
        settings == {"cache_size": -4096, "threads": min(os.cpu_count() or 1, 4), "temp_store": 1}
        for settings in while_building
    )
    assert current() == before


def test_only_big_imports_that_at_least_double_the_table_defer(settings: Any) -> None:
    settings.IMPORT_DEFER_INDEXES_MIN_ROWS = 5
    customer_create(actor=None, data={"name": "甲", "phones": [{"number": "13912345678"}]})
    customer_create(actor=None, data={"name": "乙", "phones": [{"number": "13912345679"}]})

    assert not deferred_indexes.should_defer(4)  # under the minimum
    assert deferred_indexes.should_defer(5)
    for number in range(4):
        customer_create(actor=None, data={"name": f"丙{number}"})
    assert not deferred_indexes.should_defer(5)  # six customers already: maintaining is cheaper
    assert deferred_indexes.should_defer(6)


def test_match_keys_propose_candidates_by_prefix_and_hold_repeated_keys() -> None:
    keys = MatchKeys()
    shared = _phone_index("13800138000")
    other = _phone_index("13800138001")
    # Same first 64 bits, different rest: a candidate only; existing_matches confirms on live rows.
    collision = shared[:16] + "0" * 16
    keys.add("phone", [(shared, 7), (other, 3), (shared, 2), ("", 9)])
    keys.add("phone", [(collision, 11)])

    assert len(keys) == 4
    assert keys.present("phone", [shared, other, _phone_index("13800138002"), ""]) == [
        True,
        True,
        False,
        False,
    ]
    assert keys.candidates("phone", [shared]) == {7, 2, 11}
    assert keys.candidates("phone", [other, "short"]) == {3}
    assert keys.candidates("email", [shared]) == set()
    assert keys.present("email", [shared]) == [False]


def test_shared_slots_are_those_holding_a_key_another_slot_holds() -> None:
    prefixes = key_prefixes([_phone_index(f"1380013800{digit}") for digit in (0, 1, 0, 2, 2, 3, 1)])
    slots = np.array([0, 1, 2, 3, 3, 4, 5], dtype=np.int64)

    # Slot 3 holds one number twice: a repeat within a row is no duplicate of another row.
    assert shared_slots(slots, prefixes).tolist() == [0, 1, 2, 5]
    assert shared_slots(slots[:1], prefixes[:1]).tolist() == []


def test_a_worker_stages_the_match_keys_and_created_rows_get_ids_past_the_skipped_ones(
    tmp_path: Path,
) -> None:
    phones = [_phone_index(f"1390013900{slot}") for slot in range(5)]
    id_number = _id_index("11010519491231002X")
    stage = CustomerStage(
        tmp_path / "stage.sqlite3", preparer=CustomerBatchPreparer(vendor="sqlite"), keep_values=False
    )
    customer = ["无名"] + [None] * (len(CUSTOMER_COLUMNS) - 3)
    batch = PreparedBatch([], [], [], [], [], [])
    for slot, phone in enumerate(phones):
        row_customer = list(customer)
        row_customer[CUSTOMER_COLUMNS.index("id_number_index") - 2] = id_number if slot == 4 else ""
        batch.customers.append(tuple(row_customer))
        batch.phones.append((slot, "+8613900139000", phone, "9000", "", "mobile", "", True, 0))
    # A row whose email key is not a blind index (none are in practice): always looked at.
    batch.emails.append((1, "a@example.com", "not-a-blind-index", "", True, 0))
    stage.add_prepared([(slot + 2, None) for slot in range(5)], batch)
    keys = stage.close()

    assert keys.slots["phone"].tolist() == [0, 1, 2, 3, 4]
    assert keys.prefixes["phone"].tolist() == key_prefixes(phones).tolist()
    assert keys.slots["id_number"].tolist() == [4]
    assert keys.slots["email"].tolist() == []
    assert keys.irregular == [1]

    match_keys = MatchKeys()
    # Slots 1 and 3 were matched to existing customers; the others were created from id 100 on.
    _remember_created(keys, [3, 1], 100, match_keys)
    assert [match_keys.candidates("phone", [phone]) for phone in phones] == [
        {100},
        set(),
        {101},
        set(),
        {102},
    ]
    assert match_keys.candidates("id_number", [id_number]) == {102}
