"""The processes under test and the database they share, seen from the test."""

import json

import psycopg
from psycopg import sql

from tests.support.daphne import DaphneServer
from tests.support.proxy import TcpProxy
from tests.support.services import REDIS_URL
from tests.support.v03_socket import store_url


class Node:
    """One daphne process reaching PostgreSQL and Redis through proxies of its own."""

    def __init__(self, name, directory, database_url, daphne_args=(), settings=None):
        self.name = name
        self.database_url = database_url
        self.pg = TcpProxy.for_url(database_url).start()
        self.redis = TcpProxy.for_url(REDIS_URL).start()
        environment = {
            "DATABASE_URL": self.pg.rewrite(database_url),
            "REDIS_URL": self.redis.rewrite(REDIS_URL),
            **(settings or {}),
        }
        self.server = DaphneServer(directory / f"daphne-{name}.log", environment, daphne_args=daphne_args)

    def url(self, store_id):
        return store_url(self.server.url, store_id)

    def log(self):
        path = self.server.log_path
        return path.read_text(errors="replace") if path.exists() else ""

    def log_count(self, text):
        return self.log().count(text)

    def rss_kib(self):
        """Resident memory of the daphne process in KiB (None once it is gone)."""
        try:
            with open(f"/proc/{self.server.pid}/status") as status:
                for line in status:
                    if line.startswith("VmRSS:"):
                        return int(line.split()[1])
        except (OSError, TypeError):
            return None
        return None

    def shutdown(self):
        try:
            if self.server.returncode is None and self.server.pid is not None:
                self.server.stop(timeout=10)
        finally:
            self.pg.stop()
            self.redis.stop()


# The database as the processes left it, read over a connection of the test's own.


def _store_row(connection, store_id):
    return connection.execute("SELECT head, table_name FROM syncapp_store WHERE store_id = %s", (store_id,)).fetchone()


def database_head(database_url, store_id):
    with psycopg.connect(database_url, autocommit=True) as connection:
        row = _store_row(connection, store_id)
        return 0 if row is None else row[0]


def stored_events(database_url, store_id):
    """Every stored event of the store as the wire shows it (args parsed), ascending, and the store's head."""
    with psycopg.connect(database_url, autocommit=True) as connection:
        row = _store_row(connection, store_id)
        if row is None:
            return [], 0
        head, table = row
        rows = connection.execute(
            sql.SQL('SELECT "seqNum", "parentSeqNum", "name", "args", "clientId" FROM {} ORDER BY "seqNum"').format(
                sql.Identifier("livesync", table)
            )
        ).fetchall()
    events = [
        {"seqNum": seq, "parentSeqNum": parent, "name": name, "args": json.loads(args), "clientId": client}
        for seq, parent, name, args, client in rows
    ]
    return events, head
