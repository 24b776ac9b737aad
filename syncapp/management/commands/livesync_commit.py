import json

from django.core.management.base import BaseCommand, CommandError

from syncapp import events
from syncapp.protocol import wire


class Command(BaseCommand):
    help = (
        "Commit one event to a store from the shell, at its head, with the checks of syncapp.events.commit; "
        "every connected client receives it."
    )

    def add_arguments(self, parser):
        parser.add_argument("store_id", metavar="STORE_ID")
        parser.add_argument("name", metavar="NAME", help="The event's name, e.g. v1.TodoCreated.")
        parser.add_argument("event_args", metavar="ARGS", help='The event\'s args as JSON, e.g. \'{"id": "t1"}\'.')
        parser.add_argument("--client-id", default=events.SERVER_CLIENT_ID)
        parser.add_argument("--session-id", default=events.SERVER_SESSION_ID)

    def handle(self, *args, store_id, name, event_args, client_id, session_id, **options):
        if wire.args_too_deep(event_args):
            # Before json reads it: how deep it may go before RecursionError depends on the Python.
            raise CommandError(f"ARGS nests too deeply: {wire.NESTING_LIMIT}")
        try:
            decoded = json.loads(event_args)
        except ValueError as exc:
            raise CommandError(f"ARGS is not JSON: {exc}") from None
        try:
            (seq_num,) = events.commit(store_id, [(name, decoded)], client_id=client_id, session_id=session_id)
        except (events.CommitRefused, events.CommitConflict) as exc:
            raise CommandError(str(exc)) from None
        self.stdout.write(self.style.SUCCESS(f"Committed {name} to store {store_id!r} as e{seq_num}."))
