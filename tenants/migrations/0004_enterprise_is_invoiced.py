from django.db import migrations


def invoiced(apps, schema_editor):
    apps.get_model("tenants", "Plan").objects.filter(slug="enterprise").update(prepaid=False)


def prepaid(apps, schema_editor):
    apps.get_model("tenants", "Plan").objects.filter(slug="enterprise").update(prepaid=True)


class Migration(migrations.Migration):
    dependencies = [("tenants", "0003_plan_prepaid")]
    operations = [migrations.RunPython(invoiced, prepaid)]
