class Conflict(Exception):
    """The request is well-formed but the ticket's state does not allow it (HTTP 409)."""


class TicketClosed(Conflict):
    def __init__(self, status: str) -> None:
        super().__init__(f"The ticket is {status}.")
