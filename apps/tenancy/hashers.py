from django.contrib.auth.hashers import PBKDF2PasswordHasher


class ChargerPasswordHasher(PBKDF2PasswordHasher):
    """PBKDF2 for chargers' Basic-auth passwords, with far fewer rounds than for people.

    A charger checks its password at every websocket (re)connect; after a
    server restart thousands reconnect within seconds, and a million rounds
    (about half a second each) would turn that into minutes of CPU. Charger
    passwords are generated secrets rather than human choices, so a lower cost
    keeps them safe at rest while a reconnect storm settles quickly.
    """

    algorithm = "charger_pbkdf2_sha256"
    iterations = 20_000
