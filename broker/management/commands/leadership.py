"""``manage.py leadership``: who leads each topic, per PostgreSQL (the fence) and
live per ZooKeeper, with the consumer offsets and the topic's FIX session."""

from django.core.management.base import BaseCommand

from broker.ops import leadership_live, leadership_overview


class Command(BaseCommand):
    help = "Show each topic's leader (PostgreSQL fence and live ZooKeeper election)."

    def handle(self, *args, **options) -> None:
        live = leadership_live()
        if live is None:
            self.stderr.write("ZooKeeper unreachable: showing PostgreSQL only")
        for row in leadership_overview(live):
            fence = row["fence"]
            held = (
                f"{fence.holder} epoch {fence.epoch} since {fence.elected_at:%H:%M:%S}"
                if fence
                else "never led"
            )
            queue = (
                "?"
                if row["contenders"] is None
                else ", ".join(row["contenders"]) or "-"
            )
            offsets = (
                ", ".join(f"p{o.partition}@{o.next_offset}" for o in row["offsets"])
                or "-"
            )
            fix = row["fix_session"]
            session = (
                f"{fix.sender_comp_id} out {fix.next_out_seq} in {fix.next_in_seq}"
                if fix
                else "-"
            )
            self.stdout.write(
                f"{row['topic']:<16} fence: {held:<45} zookeeper: {queue:<40} "
                f"offsets: {offsets}  fix: {session}"
            )
