"""Drop four single-column indexes that composite indexes already cover.

Only the indexes are dropped (SeparateDatabaseAndState): an AlterField would make SQLite rebuild
the customers table, which drops the full-text triggers of 0002 with it.
"""

import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("accounts", "0002_staff_phones_e164"),
        ("customers", "0002_search_indexes"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            database_operations=[
                migrations.RunSQL(
                    'DROP INDEX IF EXISTS "customers_customer_department_id_738c8343"',
                    reverse_sql='CREATE INDEX "customers_customer_department_id_738c8343" ON "customers_customer" ("department_id")',
                ),
                migrations.RunSQL(
                    'DROP INDEX IF EXISTS "customers_customer_owner_id_fbb2798e"',
                    reverse_sql='CREATE INDEX "customers_customer_owner_id_fbb2798e" ON "customers_customer" ("owner_id")',
                ),
                migrations.RunSQL(
                    'DROP INDEX IF EXISTS "customers_customertag_customer_id_bd0af7af"',
                    reverse_sql='CREATE INDEX "customers_customertag_customer_id_bd0af7af" ON "customers_customertag" ("customer_id")',
                ),
                migrations.RunSQL(
                    'DROP INDEX IF EXISTS "customers_customertag_tag_id_9e916327"',
                    reverse_sql='CREATE INDEX "customers_customertag_tag_id_9e916327" ON "customers_customertag" ("tag_id")',
                ),
            ],
            state_operations=[
                migrations.AlterField(
                    model_name="customer",
                    name="department",
                    field=models.ForeignKey(
                        blank=True,
                        db_index=False,
                        null=True,
                        on_delete=django.db.models.deletion.PROTECT,
                        related_name="customers",
                        to="accounts.department",
                        verbose_name="department",
                    ),
                ),
                migrations.AlterField(
                    model_name="customer",
                    name="owner",
                    field=models.ForeignKey(
                        blank=True,
                        db_index=False,
                        null=True,
                        on_delete=django.db.models.deletion.PROTECT,
                        related_name="owned_customers",
                        to=settings.AUTH_USER_MODEL,
                        verbose_name="owner",
                    ),
                ),
                migrations.AlterField(
                    model_name="customertag",
                    name="customer",
                    field=models.ForeignKey(
                        db_index=False,
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="tag_links",
                        to="customers.customer",
                    ),
                ),
                migrations.AlterField(
                    model_name="customertag",
                    name="tag",
                    field=models.ForeignKey(
                        db_index=False,
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="customer_links",
                        to="customers.tag",
                    ),
                ),
            ],
        ),
    ]
