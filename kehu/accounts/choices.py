from django.db import models
from django.utils.translation import gettext_lazy as _


class Language(models.TextChoices):
    ZH_HANS = "zh-hans", "简体中文"
    EN = "en", "English"


class LoginOutcome(models.TextChoices):
    SUCCESS = "success", _("Success")
    BAD_CREDENTIALS = "bad_credentials", _("Wrong user name or password")
    INACTIVE = "inactive", _("Account deactivated")
    THROTTLED = "throttled", _("Too many failed attempts")
