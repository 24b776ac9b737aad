from django.core.management.color import no_style
from django.db import DEFAULT_DB_ALIAS, migrations, models


def place_existing_stores(apps, schema_editor):
    """Stores made before placements were recorded all live in the default database: record them there,
    under their own ids, and move the id sequence past them (as loaddata does), so new ids are fresh."""
    connection = schema_editor.connection
    if connection.alias != DEFAULT_DB_ALIAS:
        return
    Store = apps.get_model("syncapp", "Store")
    StorePlacement = apps.get_model("syncapp", "StorePlacement")
    stores = Store.objects.using(connection.alias).values_list("id", "store_id").iterator(chunk_size=10_000)
    StorePlacement.objects.using(connection.alias).bulk_create(
        (StorePlacement(id=pk, store_id=store_id, database=DEFAULT_DB_ALIAS) for pk, store_id in stores),
        batch_size=1_000,
    )
    with connection.cursor() as cursor:
        for statement in connection.ops.sequence_reset_sql(no_style(), [StorePlacement]):
            cursor.execute(statement)


class Migration(migrations.Migration):
    dependencies = [
        ("syncapp", "0003_store_access"),
    ]

    operations = [
        migrations.CreateModel(
            name="StorePlacement",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("store_id", models.CharField(max_length=255, unique=True, verbose_name="storeId")),
                ("database", models.CharField(max_length=100)),
            ],
            options={
                "verbose_name": "store placement",
            },
        ),
        migrations.RunPython(place_existing_stores, migrations.RunPython.noop),
    ]
