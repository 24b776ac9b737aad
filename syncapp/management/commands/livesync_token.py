"""Print a signed sync token (see ``syncapp.tokens``) for one or more stores."""

from django.core.management.base import BaseCommand, CommandError

from syncapp import tokens


class Command(BaseCommand):
    help = "Print a token that opens the given stores (storeIds, or prefixes ending in *) until it expires."

    def add_arguments(self, parser):
        parser.add_argument("stores", nargs="+", help="storeIds or prefixes ending in *")
        parser.add_argument("--read-only", action="store_true", help="pull only; every push is refused")
        parser.add_argument(
            "--expires-in",
            type=int,
            default=tokens.DEFAULT_LIFETIME_SECONDS,
            help=f"seconds until the token expires (default {tokens.DEFAULT_LIFETIME_SECONDS})",
        )

    def handle(self, *args, stores, read_only, expires_in, **options):
        if expires_in <= 0:
            raise CommandError("--expires-in must be a positive number of seconds")
        self.stdout.write(tokens.issue(stores, read_only=read_only, expires_in=expires_in))
