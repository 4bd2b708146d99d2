"""``manage.py fix_reset <topic>...``: have each topic's FIX session start again at
sequence number 1 at its next logon (ResetSeqNumFlag=Y), e.g. for a new trading
day agreed with the venue. The code never resets on its own: a session that lost
messages recovers them by ResendRequest (docs/FIX.md)."""

from django.core.management.base import BaseCommand, CommandError

from broker.models import FixSession
from broker.topics import all_topics, fix_sender_comp_id


class Command(BaseCommand):
    help = "Reset the FIX sequence numbers of topics at their next logon."

    def add_arguments(self, parser) -> None:
        parser.add_argument("topics", nargs="+", help="topic names, or 'all'")

    def handle(self, *args, topics: list[str], **options) -> None:
        known = all_topics()
        chosen = known if topics == ["all"] else topics
        unknown = [topic for topic in chosen if topic not in known]
        if unknown:
            raise CommandError(f"unknown topics {unknown}; these exist: {known}")
        for topic in chosen:
            sender = fix_sender_comp_id(topic)
            _, created = FixSession.objects.update_or_create(
                sender_comp_id=sender,
                defaults={"topic": topic, "reset_requested": True},
            )
            self.stdout.write(
                f"{topic} ({sender}): sequence numbers reset at the next logon"
                + (" (new session)" if created else "")
            )
