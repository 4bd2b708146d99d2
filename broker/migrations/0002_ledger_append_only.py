"""The ledger is append-only in the database itself, not only by convention: an
UPDATE or DELETE of a ledger entry raises. (TRUNCATE, used by test teardown, is a
table operation and is not affected.)"""

from django.db import migrations

FORBID = """
CREATE FUNCTION broker_ledger_append_only() RETURNS trigger AS $$
BEGIN
    RAISE EXCEPTION 'ledger entries are append-only (% refused)', TG_OP
        USING ERRCODE = 'restrict_violation';
END;
$$ LANGUAGE plpgsql;

CREATE TRIGGER broker_ledger_append_only
    BEFORE UPDATE OR DELETE ON broker_ledgerentry
    FOR EACH ROW EXECUTE FUNCTION broker_ledger_append_only();
"""

ALLOW = """
DROP TRIGGER IF EXISTS broker_ledger_append_only ON broker_ledgerentry;
DROP FUNCTION IF EXISTS broker_ledger_append_only();
"""


class Migration(migrations.Migration):
    dependencies = [("broker", "0001_initial")]

    operations = [migrations.RunSQL(FORBID, ALLOW)]
