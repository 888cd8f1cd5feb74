"""Staff phones move from plain digits to E.164, the form customers' phones are stored in."""

from typing import Any

from django.db import migrations


def to_e164(apps: Any, schema_editor: Any) -> None:
    from kehu.accounts.models import staff_phone_index, staff_phone_normalised

    User = apps.get_model("accounts", "User")
    for user in User.objects.exclude(phone_index="").iterator():
        normalised = staff_phone_normalised(user.phone)
        if normalised is None or normalised == user.phone:
            # A number that cannot be read stays as typed; its owner is asked to fix it on the next edit.
            continue
        user.phone = normalised
        user.phone_index = staff_phone_index(normalised)
        user.save(update_fields=["phone", "phone_index"])


class Migration(migrations.Migration):
    dependencies = [("accounts", "0001_users_departments_roles_tokens")]

    operations = [migrations.RunPython(to_e164, migrations.RunPython.noop, elidable=False)]
