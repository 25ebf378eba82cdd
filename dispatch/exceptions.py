from django.conf import settings
from django.core.exceptions import ObjectDoesNotExist, RequestDataTooBig
from rest_framework import exceptions
from rest_framework.views import exception_handler

from tickets.exceptions import Conflict


class ConflictError(exceptions.APIException):
    status_code = 409
    default_code = "conflict"


class PayloadTooLarge(exceptions.APIException):
    status_code = 413
    default_code = "payload_too_large"


def api_exception_handler(exc, context):
    """DRF's handler, plus the domain's refusals: a state conflict is a 409, a row the caller
    may not see (or that does not exist) a 404, and a body over DATA_UPLOAD_MAX_MEMORY_SIZE
    (Django raises it when DRF reads request.body) a 413 instead of Django's bare 400."""
    if isinstance(exc, RequestDataTooBig):
        exc = PayloadTooLarge(
            f"The request body is larger than {settings.DATA_UPLOAD_MAX_MEMORY_SIZE} bytes."
        )
    elif isinstance(exc, Conflict):
        exc = ConflictError(str(exc))
    elif isinstance(exc, ObjectDoesNotExist):
        exc = exceptions.NotFound()
    return exception_handler(exc, context)
