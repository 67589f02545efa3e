# The compiled wire layer (_wire.pyx): the same names and signatures as the reference in wire.py.
from .wire import CredentialRules, MessageOwner

LLHTTP_VERSION: tuple[int, int, int]
LLHTTP_FROM: str

class RequestHead:
    method: bytes
    target: bytes
    http_version: str
    host: bytes | None
    content_length: int | None
    chunked: bool
    keep_alive: bool
    upgrade: bool
    def __init__(
        self,
        *,
        method: bytes,
        target: bytes,
        http_version: str,
        headers: list[tuple[bytes, bytes]],
        host: bytes | None,
        content_length: int | None,
        chunked: bool,
        keep_alive: bool,
        upgrade: bool,
        connection_options: frozenset[bytes],
    ) -> None: ...
    @property
    def headers(self) -> list[tuple[bytes, bytes]]: ...
    @property
    def connection_options(self) -> frozenset[bytes]: ...
    @property
    def has_body(self) -> bool: ...
    @property
    def plain(self) -> bool: ...
    @property
    def idempotent(self) -> bool: ...

class ResponseHead:
    status: int
    reason: bytes
    content_length: int | None
    chunked: bool
    keep_alive: bool
    def __init__(
        self,
        *,
        status: int,
        reason: bytes,
        headers: list[tuple[bytes, bytes]],
        content_length: int | None,
        chunked: bool,
        keep_alive: bool,
        connection_options: frozenset[bytes],
    ) -> None: ...
    @property
    def headers(self) -> list[tuple[bytes, bytes]]: ...
    @property
    def connection_options(self) -> frozenset[bytes]: ...
    @property
    def informational(self) -> bool: ...
    @property
    def bodyless(self) -> bool: ...

class RequestParser:
    def __init__(self, owner: MessageOwner, max_header_bytes: int) -> None: ...
    def feed(self, data: bytes) -> int: ...

class ResponseParser:
    def __init__(self, owner: MessageOwner, max_header_bytes: int) -> None: ...
    def feed(self, data: bytes) -> int: ...

class ResponseFramer:
    response: ResponseHead | None
    framing: int
    close_client: bool
    done: bool
    complete: bool
    unexpected: bool
    switched: bool
    request_pending: bool
    def __init__(self, max_header_bytes: int) -> None: ...
    def start(self, request: RequestHead, *, host_only_cookies: bool, added: bytes = b"") -> None: ...
    def feed(self, data: bytes) -> bytes: ...
    def at_eof(self) -> bytes | None: ...

def upstream_request_head(
    head: RequestHead, *, client_address: bytes, scheme: bytes, credential_rules: CredentialRules | None
) -> bytes: ...
def client_response_head(
    head: ResponseHead, *, framing: int, connection: bytes | None, host_only_cookies: bool, added: bytes = b""
) -> bytes: ...
def response_framing(response: ResponseHead, request: RequestHead) -> int: ...
def leading_head_length(data: bytes) -> int: ...
def passes_unchanged(head: ResponseHead, *, framing: int, connection: bytes | None) -> bool: ...
def without_cookie(cookie_header: bytes, name: bytes) -> bytes: ...
