"""Drop three customer-id indexes that composite indexes already cover.

The phones' and emails' unique (customer, index) constraints and the events' timeline index all
begin with the customer: the single-column indexes only cost every insert (a million-row import
wrote three million entries into them). Only the indexes are dropped, as in 0003.
"""

import django.db.models.deletion
from django.db import migrations, models

# (table, the index Django named for its customer_id foreign key)
COVERED = (
    ("customers_customerphone", "customers_customerphone_customer_id_f2850eb1"),
    ("customers_customeremail", "customers_customeremail_customer_id_1fe27408"),
    ("customers_customerevent", "customers_customerevent_customer_id_d00346ad"),
)


def _customer_field(related_name: str) -> models.ForeignKey:  # type: ignore[type-arg]
    return models.ForeignKey(
        db_index=False,
        on_delete=django.db.models.deletion.CASCADE,
        related_name=related_name,
        to="customers.customer",
    )


class Migration(migrations.Migration):
    dependencies = [("customers", "0003_drop_redundant_indexes")]

    operations = [
        migrations.SeparateDatabaseAndState(
            database_operations=[
                migrations.RunSQL(
                    f'DROP INDEX IF EXISTS "{index}"',
                    reverse_sql=f'CREATE INDEX "{index}" ON "{table}" ("customer_id")',
                )
                for table, index in COVERED
            ],
            state_operations=[
                migrations.AlterField(
                    model_name="customerphone", name="customer", field=_customer_field("phones")
                ),
                migrations.AlterField(
                    model_name="customeremail", name="customer", field=_customer_field("emails")
                ),
                migrations.AlterField(
                    model_name="customerevent", name="customer", field=_customer_field("events")
                ),
            ],
        ),
    ]
