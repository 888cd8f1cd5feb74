from django.db import migrations

GENESIS_HASH = "0" * 64


def create_head(apps, schema_editor):
    # The head row must exist before the first writer arrives, or two first writers would race
    # to create it.
    AuditChainHead = apps.get_model("core", "AuditChainHead")
    AuditChainHead.objects.get_or_create(pk=1, defaults={"last_sequence": 0, "last_hash": GENESIS_HASH})


class Migration(migrations.Migration):
    dependencies = [("core", "0001_audit_log")]

    operations = [migrations.RunPython(create_head, migrations.RunPython.noop)]
