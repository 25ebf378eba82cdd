from django.core.exceptions import ObjectDoesNotExist
from rest_framework import exceptions
from rest_framework.views import exception_handler

from tickets.exceptions import Conflict


class ConflictError(exceptions.APIException):
    status_code = 409
    default_code = "conflict"


def api_exception_handler(exc, context):
    """DRF's handler, plus the domain's refusals: a state conflict is a 409, a row the caller
    may not see (or that does not exist) a 404."""
    if isinstance(exc, Conflict):
        exc = ConflictError(str(exc))
    elif isinstance(exc, ObjectDoesNotExist):
        exc = exceptions.NotFound()
    return exception_handler(exc, context)
