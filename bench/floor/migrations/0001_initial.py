from django.db import migrations, models


class Migration(migrations.Migration):
    initial = True
    dependencies: list[tuple[str, str]] = []

    operations = [
        migrations.CreateModel(
            name="FloorEvent",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                ("event_id", models.CharField(max_length=255, unique=True)),
                ("object_id", models.CharField(db_index=True, max_length=255)),
                ("status", models.CharField(blank=True, max_length=32)),
                ("payload", models.TextField()),
            ],
        ),
    ]
