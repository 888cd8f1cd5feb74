"""The RFM covering index also carries refunded_fen: the metrics refresh reads the index alone."""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("commerce", "0002_initial"),
    ]

    operations = [
        migrations.RemoveIndex(
            model_name="order",
            name="order_customer_rfm_idx",
        ),
        migrations.AddIndex(
            model_name="order",
            index=models.Index(
                fields=["customer", "ordered_at", "total_fen", "refunded_fen"], name="order_customer_rfm_idx"
            ),
        ),
    ]
