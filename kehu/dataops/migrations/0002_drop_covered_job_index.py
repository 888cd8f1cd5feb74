"""Drop the imported records' job index: imported_record_once_per_row (job, row_number, model)
begins with the job and covers it. Every imported row wrote an entry into both."""

import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("dataops", "0001_initial")]

    operations = [
        migrations.SeparateDatabaseAndState(
            database_operations=[
                migrations.RunSQL(
                    'DROP INDEX IF EXISTS "dataops_importedrecord_job_id_62d1ccd8"',
                    reverse_sql='CREATE INDEX "dataops_importedrecord_job_id_62d1ccd8" '
                    'ON "dataops_importedrecord" ("job_id")',
                )
            ],
            state_operations=[
                migrations.AlterField(
                    model_name="importedrecord",
                    name="job",
                    field=models.ForeignKey(
                        db_index=False,
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="records",
                        to="dataops.importjob",
                    ),
                )
            ],
        )
    ]
