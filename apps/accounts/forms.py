from django import forms
from django.conf import settings
from django.contrib.auth.forms import AuthenticationForm, PasswordResetForm
from django.utils.translation import gettext_lazy as _

from apps.accounts.models import User


class EmailAuthenticationForm(AuthenticationForm):
    username = forms.EmailField(label=_("E-mail"), widget=forms.EmailInput(attrs={"autofocus": True}))


class EveryonePasswordResetForm(PasswordResetForm):
    """Django skips accounts without a usable password; here that only means "not chosen yet".

    People created by commissioning have none until they follow their invitation,
    and "Forgot your password?" must work for them too (a lost invitation).
    """

    def get_users(self, email):
        return User.objects.filter(email__iexact=email.strip(), is_active=True)


class ProfileForm(forms.Form):
    name = forms.CharField(label=_("Name"), max_length=200, required=False)
    preferred_language = forms.ChoiceField(
        label=_("Language"), required=False,
        choices=[("", _("Automatic: the browser's for pages, the building's for e-mails")), *settings.LANGUAGES],
        help_text=_("Pages, e-mails and statements are in this language."),
    )
