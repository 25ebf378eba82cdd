import logging

from django.conf import settings
from django.core.exceptions import ObjectDoesNotExist, RequestDataTooBig
from django.db import InterfaceError, OperationalError
from django.http import HttpResponse
from django.template import loader
from django.utils.deprecation import MiddlewareMixin
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse
from rest_framework import exceptions, serializers
from rest_framework.views import exception_handler

from tickets.exceptions import Conflict

logger = logging.getLogger(__name__)

# What a client is told to wait before trying again while the database does not answer: about
# how long a restart or a failover of a managed PostgreSQL takes.
DATABASE_RETRY_AFTER_SECONDS = 5


class ConflictError(exceptions.APIException):
    status_code = 409
    default_code = "conflict"


class PayloadTooLarge(exceptions.APIException):
    status_code = 413
    default_code = "payload_too_large"


class DatabaseUnavailable(exceptions.APIException):
    status_code = 503
    default_detail = "The service is temporarily unavailable; try again in a few seconds."
    default_code = "service_unavailable"
    # DRF's handler turns `wait` into a Retry-After header.
    wait = DATABASE_RETRY_AFTER_SECONDS


def api_exception_handler(exc, context):
    """DRF's handler, plus the domain's refusals: a state conflict is a 409, a row the caller
    may not see (or that does not exist) a 404, and a body over DATA_UPLOAD_MAX_MEMORY_SIZE
    (Django raises it when DRF reads request.body) a 413 instead of Django's bare 400.

    A database that cannot be reached (or a connection lost under the request) is a 503 with a
    plain message and Retry-After, never a 500 with a trace: the client did nothing wrong and
    should retry. Whatever the request had begun is rolled back with its transaction, so a retry
    finds nothing half-written; the error itself goes to the log for the operators.
    """
    if isinstance(exc, OperationalError | InterfaceError):
        logger.error("Answered 503, the database failed: %s", exc)
        exc = DatabaseUnavailable()
    elif isinstance(exc, RequestDataTooBig):
        exc = PayloadTooLarge(
            f"The request body is larger than {settings.DATA_UPLOAD_MAX_MEMORY_SIZE} bytes."
        )
    elif isinstance(exc, Conflict):
        exc = ConflictError(str(exc))
    elif isinstance(exc, ObjectDoesNotExist):
        exc = exceptions.NotFound()
    return exception_handler(exc, context)


# --- The error answers, described for the OpenAPI schema ------------------------------------


class ErrorSerializer(serializers.Serializer):
    detail = serializers.CharField()


VALIDATION_ERRORS_SCHEMA = {
    "type": "object",
    "description": 'Each invalid field with its messages, `{"field": ["message"]}` (nested for '
    "objects and lists), or `non_field_errors`; a body that is not JSON gets `detail`.",
    "additionalProperties": {},
}

ERROR_DESCRIPTIONS = {
    401: "The credentials are missing, unknown or revoked.",
    403: "The caller may not use this endpoint.",
    404: "No such object, or one the caller may not see.",
    409: "The object's state does not allow this now.",
    413: "The request body is larger than 1 MiB.",
    415: "The request body is not JSON.",
    429: "Too many requests; `Retry-After` says how many seconds to wait.",
}

RETRY_AFTER = OpenApiParameter(
    "Retry-After",
    type=int,
    location=OpenApiParameter.HEADER,
    response=[429],
    description="Seconds until the next request will be accepted.",
)


def error_responses(*status_codes: int) -> dict[int, OpenApiResponse]:
    """The documented error answers of an endpoint, in the shapes the handler above gives."""
    return {
        code: (
            OpenApiResponse(VALIDATION_ERRORS_SCHEMA, description="The input is not valid.")
            if code == 400
            else OpenApiResponse(ErrorSerializer, description=ERROR_DESCRIPTIONS[code])
        )
        for code in status_codes
    }


class DatabaseUnavailableMiddleware(MiddlewareMixin):
    """A page whose view the database failed under answers as the API does: a 503 with the
    same message and Retry-After, not a 500, and the error goes to the log for the operators.
    Its template reads nothing from the database, which is what failed.

    Synchronous only, and last in MIDDLEWARE, so that under ASGI Django runs the whole chain in
    the request's one thread. Over an asynchronous handler Django runs every middleware that can
    be either asynchronously, and each of them then hops from the event loop into the request's
    thread and back for each of its hooks: a dozen hops a request, which doubled the web
    process's CPU time for a plain request.
    """

    async_capable = False

    def process_exception(self, request, exception):
        if not isinstance(exception, OperationalError | InterfaceError):
            return None
        logger.error("Answered 503, the database failed: %s", exception)
        response = HttpResponse(
            loader.render_to_string("503.html", {"detail": DatabaseUnavailable.default_detail}),
            status=503,
        )
        response["Retry-After"] = str(DATABASE_RETRY_AFTER_SECONDS)
        return response
