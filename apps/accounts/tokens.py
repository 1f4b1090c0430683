"""One-time links to choose a password.

Django's password-reset tokens are one-time because they hash the password and
the last login, which change once the link is used. Invitations work the same
way but stay valid for INVITATION_VALID_DAYS (a new resident may take a week to
look at the e-mail), not PASSWORD_RESET_TIMEOUT, and use their own salt so that
a reset token is never accepted as an invitation or the other way round.
"""

from __future__ import annotations

from django.conf import settings
from django.contrib.auth.tokens import PasswordResetTokenGenerator
from django.utils.crypto import constant_time_compare
from django.utils.http import base36_to_int


class InvitationTokenGenerator(PasswordResetTokenGenerator):
    key_salt = "apps.accounts.tokens.InvitationTokenGenerator"

    def check_token(self, user, token) -> bool:
        if not (user and token):
            return False
        try:
            ts_b36, _ = token.split("-")
            ts = base36_to_int(ts_b36)
        except ValueError:
            return False
        if not any(
            constant_time_compare(self._make_token_with_timestamp(user, ts, secret), token)
            for secret in [self.secret, *self.secret_fallbacks]
        ):
            return False
        return self._num_seconds(self._now()) - ts <= settings.INVITATION_VALID_DAYS * 24 * 3600


invitation_tokens = InvitationTokenGenerator()
