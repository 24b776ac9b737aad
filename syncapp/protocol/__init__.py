"""What both LiveStore sync protocol generations share, below their codecs (``syncapp.v03``, ``syncapp.v04``).

- ``generations``: the two generations, named once (``V03``, ``V04``).
- ``wire``: LiveStore's encoded event, its checks, its JSON (args kept as the client sent them).
- ``pages``: cutting events into frames a connection can carry, and encoding them.
"""
