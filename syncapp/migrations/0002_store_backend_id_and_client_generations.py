from django.db import migrations, models

import syncapp.models


def give_each_store_its_own_backend_id(apps, schema_editor):
    # AddField's callable default is evaluated once for all existing rows.
    Store = apps.get_model("syncapp", "Store")
    for store in Store.objects.only("pk"):
        Store.objects.filter(pk=store.pk).update(backend_id=syncapp.models.new_backend_id())


class Migration(migrations.Migration):
    dependencies = [("syncapp", "0001_initial")]

    operations = [
        migrations.AddField(
            model_name="store",
            name="backend_id",
            field=models.CharField(default="", max_length=64, verbose_name="backendId"),
            preserve_default=False,
        ),
        migrations.RunPython(give_each_store_its_own_backend_id, migrations.RunPython.noop),
        migrations.AlterField(
            model_name="store",
            name="backend_id",
            field=models.CharField(default=syncapp.models.new_backend_id, max_length=64, verbose_name="backendId"),
        ),
        migrations.AddField(
            model_name="store",
            name="last_v03_client_at",
            field=models.DateTimeField(blank=True, null=True, verbose_name="last 0.3 client"),
        ),
        migrations.AddField(
            model_name="store",
            name="last_v04_client_at",
            field=models.DateTimeField(blank=True, null=True, verbose_name="last 0.4 client"),
        ),
    ]
