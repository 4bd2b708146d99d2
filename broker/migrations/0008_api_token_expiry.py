import django.utils.timezone
from django.conf import settings
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("broker", "0007_trade_event_kind_choices"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        # Existing tokens start their idle time at the migration: none is cut off by
        # the deploy that introduces expiry.
        migrations.AddField(
            model_name="apitoken",
            name="last_used_at",
            field=models.DateTimeField(default=django.utils.timezone.now),
        ),
        migrations.AddConstraint(
            model_name="apitoken",
            constraint=models.UniqueConstraint(
                fields=("user", "prefix"), name="api_token_prefix_unique_per_user"
            ),
        ),
    ]
