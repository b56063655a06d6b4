from collections.abc import Callable

MAX_ID_LENGTH: int
MAX_NAME_LENGTH: int
MAX_MESSAGE_LENGTH: int
MAX_EMAIL_LENGTH: int
MAX_IDEMPOTENCY_KEY_LENGTH: int

class Checker:
    def __init__(
        self,
        *,
        tenant_id: str,
        received_text: str,
        latest: int,
        max_depth: int,
        max_string_length: int,
        max_event_bytes: int,
        check_email: Callable[[str], str],
    ) -> None: ...
    def check(
        self, payload: object, default_text: str | None = None
    ) -> tuple[bytes, str, str | None] | None: ...
    def check_many(
        self, payloads: list[object], default_texts: list[str | None] | None = None
    ) -> list[tuple[bytes, str, str | None] | None]: ...

def dumps_str(text: str) -> bytes: ...
def parse_timestamp(text: str) -> tuple[int, str] | None: ...
def schema() -> dict[str, list[tuple[str, str, int, int, bool]] | list[str]]: ...
