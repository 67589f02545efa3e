# cython: language_level=3, boundscheck=False, wraparound=False, initializedcheck=False, cdivision=True
"""The HTTP/1.1 wire layer, compiled: the names and behaviour of `wire` (read its docstring first), on llhttp's C
API instead of httptools.

Why it exists: through httptools every header of every message is a Python call with two new bytes objects,
and the heads, the checks and the rewriting are Python objects and Python code per header. Here a parser
collects a head's bytes into one buffer with the position, rule and kind of each header (no Python object per
header), checks it in C, and hands the owner one head object; the rewriting walks those positions and writes the
new head into one buffer. The header list (`head.headers`) is only built when something asks for it.

What stays with the reference implementation, called from here: the rare forms of a credential (anything but
`Bearer <token>`) and a `Set-Cookie` that names a Domain. Everything else is decided here, to the same rules;
tests/unit/test_proxy_wire_parity.py holds the two implementations to the same verdicts and the same bytes.
"""

from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from cpython.mem cimport PyMem_Free, PyMem_Malloc, PyMem_Realloc
from libc.stdint cimport uint8_t, uint16_t, uint32_t, uint64_t
from libc.stdio cimport snprintf
from libc.string cimport memcmp, memcpy, memmove

from . import wire as _reference
from .errors import BadRequest, HeadersTooLarge, ProxyError, UpstreamFailed


cdef extern from *:
    """
    #ifndef SPACEHUB_LLHTTP_FROM
    #define SPACEHUB_LLHTTP_FROM "unknown"
    #endif
    """
    const char* SPACEHUB_LLHTTP_FROM


cdef extern from "llhttp.h":
    int LLHTTP_VERSION_MAJOR
    int LLHTTP_VERSION_MINOR
    int LLHTTP_VERSION_PATCH
    ctypedef struct llhttp_t:
        uint64_t content_length
        uint8_t type
        uint8_t method
        uint8_t http_major
        uint8_t http_minor
        uint8_t upgrade
        uint16_t flags
        uint16_t status_code
        void* data

    ctypedef int (*llhttp_data_cb)(llhttp_t*, const char*, size_t) noexcept
    ctypedef int (*llhttp_cb)(llhttp_t*) noexcept

    ctypedef struct llhttp_settings_t:
        llhttp_cb on_message_begin
        llhttp_data_cb on_url
        llhttp_data_cb on_status
        llhttp_data_cb on_header_field
        llhttp_data_cb on_header_value
        llhttp_cb on_headers_complete
        llhttp_data_cb on_body
        llhttp_cb on_message_complete
        llhttp_cb on_header_field_complete
        llhttp_cb on_header_value_complete

    ctypedef enum llhttp_type_t:
        HTTP_REQUEST
        HTTP_RESPONSE

    ctypedef enum llhttp_errno_t:
        HPE_OK
        HPE_PAUSED_UPGRADE
        HPE_USER

    void llhttp_settings_init(llhttp_settings_t* settings)
    void llhttp_init(llhttp_t* parser, llhttp_type_t type, const llhttp_settings_t* settings)
    llhttp_errno_t llhttp_execute(llhttp_t* parser, const char* data, size_t len)
    int llhttp_should_keep_alive(const llhttp_t* parser)
    void llhttp_resume_after_upgrade(llhttp_t* parser)
    const char* llhttp_get_error_reason(const llhttp_t* parser)
    const char* llhttp_get_error_pos(const llhttp_t* parser)
    const char* llhttp_method_name(uint8_t method)


# Which llhttp this module was compiled from, and where its sources came from (setup.py).
LLHTTP_VERSION = (LLHTTP_VERSION_MAJOR, LLHTTP_VERSION_MINOR, LLHTTP_VERSION_PATCH)
LLHTTP_FROM = SPACEHUB_LLHTTP_FROM.decode()


# Framing towards the client (the same numbers as `wire`).
cdef enum:
    BODY_NONE = 0
    BODY_LENGTH = 1
    BODY_CHUNKED = 2
    BODY_UNTIL_CLOSE = 3

# A header's rule, decided once by its name while it is parsed (or given). Requests and responses have their own.
cdef enum:
    PASS = 0
    DROP = 1
    UPGRADE = 2              # requests: the protocol of an upgrade; responses: kept in a 101 answer only
    HF_AUTHORIZATION = 3     # requests: never reaches an app
    AUTHORIZATION = 4        # requests: reaches an app unless it carries a platform token
    COOKIE = 5               # requests: reaches an app without the platform's session cookie
    LENGTH = 6               # responses: kept only where the response has no body
    SET_COOKIE = 7           # responses: made host-only for apps

# The headers a parser interprets itself (by their lower-case name, `_` not folded).
cdef enum:
    NOT_NOTABLE = 0
    N_HOST = 1
    N_CONTENT_LENGTH = 2
    N_TRANSFER_ENCODING = 3
    N_CONNECTION = 4

cdef enum:
    IDLE = 0
    IN_HEAD = 1
    IN_BODY = 2

cdef enum:
    HEADER_LINE_OVERHEAD = 4     # ": " and CRLF
    FIRST_LINE_OVERHEAD = 20     # a method or version, two spaces, "HTTP/1.1" and CRLF
    STACK_OUT = 4096             # rewritten heads up to this size are built on the stack

cdef struct Span:
    uint32_t at
    uint32_t length

cdef struct Header:
    Span name
    Span value
    uint8_t action               # for a request head: its request rule; for a response head: its response rule
    uint8_t notable


cdef inline uint8_t lower(uint8_t c) noexcept nogil:
    return c + 32 if 65 <= c <= 90 else c


cdef inline bint is_space(uint8_t c) noexcept nogil:
    # What bytes.strip() strips: ASCII whitespace.
    return c == 32 or c == 9 or c == 10 or c == 13 or c == 11 or c == 12


cdef bint equals_lower(const char* name, Py_ssize_t n, const char* lowered, bint fold_underscore) noexcept nogil:
    """`name`, lower-cased (and with `_` read as `-`), equals the NUL-terminated lower-case `lowered`."""
    cdef Py_ssize_t i
    cdef uint8_t c
    for i in range(n):
        if lowered[i] == 0:
            return False
        c = lower(<uint8_t>name[i])
        if fold_underscore and c == 95:
            c = 45
        if c != <uint8_t>lowered[i]:
            return False
    return lowered[n] == 0


cdef bint starts_lower(const char* name, Py_ssize_t n, const char* prefix, Py_ssize_t k, bint fold) noexcept nogil:
    cdef Py_ssize_t i
    cdef uint8_t c
    if n < k:
        return False
    for i in range(k):
        c = lower(<uint8_t>name[i])
        if fold and c == 95:
            c = 45
        if c != <uint8_t>prefix[i]:
            return False
    return True


cdef uint8_t request_rule(const char* name, Py_ssize_t n) noexcept nogil:
    """A request header's rule by its name (`wire._request_action` without the Connection-listed part), compared
    lower-cased with `_` read as `-` (WSGI/CGI servers read `X_Forwarded_For` as `X-Forwarded-For`)."""
    if n >= 6 and lower(<uint8_t>name[0]) == b'p' and starts_lower(name, n, b"proxy-", 6, True):
        return DROP
    if n == 2:
        return DROP if equals_lower(name, n, b"te", True) else PASS
    if n == 4:
        return DROP if equals_lower(name, n, b"host", True) else PASS
    if n == 6:
        return COOKIE if equals_lower(name, n, b"cookie", True) else PASS
    if n == 7:
        if equals_lower(name, n, b"upgrade", True):
            return UPGRADE
        return DROP if equals_lower(name, n, b"trailer", True) else PASS
    if n == 9:
        return DROP if equals_lower(name, n, b"forwarded", True) or equals_lower(name, n, b"x-real-ip", True) else PASS
    if n == 10:
        return DROP if equals_lower(name, n, b"connection", True) or equals_lower(name, n, b"keep-alive", True) else PASS
    if n == 13:
        return AUTHORIZATION if equals_lower(name, n, b"authorization", True) else PASS
    if n == 14:
        return DROP if equals_lower(name, n, b"content-length", True) else PASS
    if n == 17 and equals_lower(name, n, b"transfer-encoding", True):
        return DROP
    if n == 18 and equals_lower(name, n, b"x-hf-authorization", True):
        return HF_AUTHORIZATION
    if 15 <= n <= 18 and starts_lower(name, n, b"x-forwarded-", 12, True) and (
        equals_lower(name + 12, n - 12, b"for", True)
        or equals_lower(name + 12, n - 12, b"host", True)
        or equals_lower(name + 12, n - 12, b"proto", True)
        or equals_lower(name + 12, n - 12, b"port", True)
        or equals_lower(name + 12, n - 12, b"prefix", True)
        or equals_lower(name + 12, n - 12, b"server", True)
    ):
        return DROP
    return PASS


cdef uint8_t response_rule(const char* name, Py_ssize_t n) noexcept nogil:
    """A response header's rule by its lower-cased name (`wire._response_action`)."""
    if n >= 6 and lower(<uint8_t>name[0]) == b'p' and starts_lower(name, n, b"proxy-", 6, False):
        return DROP
    if n == 2:
        return DROP if equals_lower(name, n, b"te", False) else PASS
    if n == 7:
        if equals_lower(name, n, b"upgrade", False):
            return UPGRADE
        return DROP if equals_lower(name, n, b"trailer", False) else PASS
    if n == 10:
        if equals_lower(name, n, b"set-cookie", False):
            return SET_COOKIE
        return DROP if equals_lower(name, n, b"connection", False) or equals_lower(name, n, b"keep-alive", False) else PASS
    if n == 14:
        return LENGTH if equals_lower(name, n, b"content-length", False) else PASS
    if n == 17:
        return DROP if equals_lower(name, n, b"transfer-encoding", False) else PASS
    return PASS


cdef uint8_t notable_kind(const char* name, Py_ssize_t n) noexcept nogil:
    if n == 4:
        return N_HOST if equals_lower(name, n, b"host", False) else NOT_NOTABLE
    if n == 14:
        return N_CONTENT_LENGTH if equals_lower(name, n, b"content-length", False) else NOT_NOTABLE
    if n == 17:
        return N_TRANSFER_ENCODING if equals_lower(name, n, b"transfer-encoding", False) else NOT_NOTABLE
    if n == 10:
        return N_CONNECTION if equals_lower(name, n, b"connection", False) else NOT_NOTABLE
    return NOT_NOTABLE


cdef bint is_chunked(const char* value, Py_ssize_t n) noexcept nogil:
    """`value.strip().lower() == b"chunked"`."""
    cdef Py_ssize_t start = 0
    cdef Py_ssize_t end = n
    while start < end and is_space(<uint8_t>value[start]):
        start += 1
    while end > start and is_space(<uint8_t>value[end - 1]):
        end -= 1
    return equals_lower(value + start, end - start, b"chunked", False)


cdef bint valid_host(const char* s, Py_ssize_t n) noexcept nogil:
    """`wire._HOST_VALUE.fullmatch(s)`: an IPv6 literal or a reg-name / IPv4, then an optional `:port`."""
    cdef Py_ssize_t i = 0
    cdef Py_ssize_t j
    cdef uint8_t c
    if n > 0 and s[0] == b'[':
        j = 1
        while j < n:
            c = <uint8_t>s[j]
            if not ((48 <= c <= 57) or (65 <= c <= 70) or (97 <= c <= 102) or c == 58 or c == 46):
                break
            j += 1
        if j == 1 or j >= n or s[j] != b']':
            return False
        i = j + 1
    else:
        while i < n:
            c = <uint8_t>s[i]
            if not (
                (48 <= c <= 57) or (65 <= c <= 90) or (97 <= c <= 122)
                or c == 46 or c == 95 or c == 126 or c == 33 or c == 36 or c == 38 or c == 39 or c == 40
                or c == 41 or c == 42 or c == 43 or c == 44 or c == 59 or c == 61 or c == 37 or c == 45
            ):
                break
            i += 1
    if i < n:
        if s[i] != b':':
            return False
        i += 1
        while i < n:
            c = <uint8_t>s[i]
            if not (48 <= c <= 57):
                return False
            i += 1
    return True


cdef bint all_digits(const char* s, Py_ssize_t n) noexcept nogil:
    cdef Py_ssize_t i
    if n == 0:
        return False
    for i in range(n):
        if not (48 <= <uint8_t>s[i] <= 57):
            return False
    return True


cdef Py_ssize_t find(const char* s, Py_ssize_t n, const char* sub, Py_ssize_t k, Py_ssize_t start) noexcept nogil:
    """The first index of `sub` in `s[start:n]` (as `bytes.find`), or -1."""
    cdef Py_ssize_t i
    if k == 0:
        return start if start <= n else -1
    i = start
    while i + k <= n:
        if s[i] == sub[0] and memcmp(s + i, sub, k) == 0:
            return i
        i += 1
    return -1


cdef bint contains_domain(const char* s, Py_ssize_t n) noexcept nogil:
    """`b"domain" in s.lower()`."""
    cdef Py_ssize_t i
    for i in range(n - 5):
        if lower(<uint8_t>s[i]) == 100 and equals_lower(s + i, 6, b"domain", False):
            return True
    return False


cdef Py_ssize_t without_cookie_in_place(char* v, Py_ssize_t n, const char* name, Py_ssize_t k) noexcept nogil:
    """`wire.without_cookie` on `v[:n]`, in place; returns the new length (0: nothing left).

    The same steps as the reference, on one buffer: find the name, check it begins a pair, cut the pair out."""
    cdef Py_ssize_t search = 0
    cdef Py_ssize_t at, after, separator, end, i, rest, keep
    cdef bint inside
    if k == 0:
        return n
    while True:
        at = find(v, n, name, k, search)
        if at < 0:
            return n
        after = at + k
        separator = -1
        if at:
            i = at - 1
            while i >= 0 and v[i] != b';':
                i -= 1
            separator = i
        # Inside another pair: text between the separator and the name, or no `=` after it.
        inside = False
        if at:
            for i in range(separator + 1, at):
                if not is_space(<uint8_t>v[i]):
                    inside = True
                    break
        if not inside:
            i = after
            while i < n and is_space(<uint8_t>v[i]):
                i += 1
            inside = i >= n or v[i] != b'='
        if inside:
            search = after
            continue
        end = find(v, n, b";", 1, after)
        if end >= 0:
            rest = end + 1
            while rest < n and is_space(<uint8_t>v[rest]):
                rest += 1
            keep = separator + 1
            if separator >= 0 and rest < n:
                v[keep] = b' '
                keep += 1
            memmove(v + keep, v + rest, n - rest)
            n = keep + (n - rest)
            search = separator + 1
        else:
            if separator < 0:
                return 0
            n = separator
            while n > 0 and is_space(<uint8_t>v[n - 1]):
                n -= 1
            return n


cdef struct Out:
    # A head being written: a buffer on the caller's stack, or on the heap when it would not fit.
    char* data
    Py_ssize_t length
    bint owned


cdef int out_open(Out* out, char* stack, Py_ssize_t bound) except -1:
    out.length = 0
    out.owned = bound > STACK_OUT
    out.data = <char*>PyMem_Malloc(bound) if out.owned else stack
    if out.data == NULL:
        raise MemoryError()
    return 0


cdef inline void out_put(Out* out, const char* s, Py_ssize_t n) noexcept:
    memcpy(out.data + out.length, s, n)
    out.length += n


cdef inline void out_put_bytes(Out* out, bytes b) noexcept:
    out_put(out, PyBytes_AS_STRING(b), PyBytes_GET_SIZE(b))


cdef inline void out_free(Out* out) noexcept:
    if out.owned:
        PyMem_Free(out.data)
        out.owned = False


# Heads


cdef class _Head:
    """A message head: its header bytes in one buffer, each header's position, rule and kind, and the names its
    Connection header lists (their positions, lower-cased when compared)."""
    cdef bytes _buffer
    cdef Header* _headers
    cdef Py_ssize_t _count
    cdef Span* _listed
    cdef Py_ssize_t _listed_count
    cdef object _header_list      # the (name, value) list, once asked for
    cdef object _options          # the frozenset of listed names, once asked for
    cdef bint _own_headers        # `_headers` was allocated for it (else it lies in `_buffer`, after the text)

    def __dealloc__(self):
        if self._own_headers:
            PyMem_Free(self._headers)
        PyMem_Free(self._listed)

    cdef int _take(self, bytes buffer, Py_ssize_t headers_at, Py_ssize_t count) except -1:
        """Take a parser's buffer: the head's text, then (from `headers_at`) its `count` headers' positions."""
        self._buffer = buffer
        self._count = count
        self._headers = <Header*>(PyBytes_AS_STRING(buffer) + headers_at)
        self._find_listed()
        return 0

    cdef int _find_listed(self) except -1:
        """The tokens of the Connection headers (`wire._connection_options`), as positions in the buffer."""
        cdef const char* base = PyBytes_AS_STRING(self._buffer)
        cdef Py_ssize_t h, i, start, end, stop, total = 0
        for h in range(self._count):
            if self._headers[h].notable == N_CONNECTION:
                total += 1 + self._headers[h].value.length // 2  # at most this many tokens in one value
        if total == 0:
            return 0
        self._listed = <Span*>PyMem_Malloc(total * sizeof(Span))
        if self._listed == NULL:
            raise MemoryError()
        for h in range(self._count):
            if self._headers[h].notable != N_CONNECTION:
                continue
            i = self._headers[h].value.at
            stop = i + self._headers[h].value.length
            while i <= stop:
                start = i
                while i < stop and base[i] != b',':
                    i += 1
                end = i
                while start < end and is_space(<uint8_t>base[start]):
                    start += 1
                while end > start and is_space(<uint8_t>base[end - 1]):
                    end -= 1
                if end > start:
                    self._listed[self._listed_count].at = <uint32_t>start
                    self._listed[self._listed_count].length = <uint32_t>(end - start)
                    self._listed_count += 1
                i += 1
        return 0

    cdef bint _is_listed(self, const char* name, Py_ssize_t n, bint fold) noexcept:
        """The name (lower-cased; with `fold`, `_` read as `-`) is one the Connection header lists."""
        cdef const char* base = PyBytes_AS_STRING(self._buffer)
        cdef Py_ssize_t t, i
        cdef uint8_t c
        cdef const char* token
        for t in range(self._listed_count):
            if self._listed[t].length != n:
                continue
            token = base + self._listed[t].at
            for i in range(n):
                c = lower(<uint8_t>name[i])
                if fold and c == 95:
                    c = 45
                if c != lower(<uint8_t>token[i]):
                    break
            else:
                return True
        return False

    @property
    def headers(self):
        """The headers as received, `(name, value)` in order, names in their original case."""
        cdef const char* base
        cdef Py_ssize_t h
        if self._header_list is None:
            base = PyBytes_AS_STRING(self._buffer)
            self._header_list = [
                (
                    PyBytes_FromStringAndSize(base + self._headers[h].name.at, self._headers[h].name.length),
                    PyBytes_FromStringAndSize(base + self._headers[h].value.at, self._headers[h].value.length),
                )
                for h in range(self._count)
            ]
        return self._header_list

    @property
    def connection_options(self):
        """The lower-case names listed in Connection (hop-by-hop)."""
        cdef const char* base
        cdef Py_ssize_t t
        if self._options is None:
            base = PyBytes_AS_STRING(self._buffer)
            self._options = frozenset(
                PyBytes_FromStringAndSize(base + self._listed[t].at, self._listed[t].length).lower()
                for t in range(self._listed_count)
            )
        return self._options


cdef int _build(_Head head, list headers, frozenset listed, bint request) except -1:
    """Fill a head made from Python values (the constructors): the same layout a parser gives."""
    cdef Py_ssize_t count = len(headers)
    cdef Py_ssize_t size = 0, at = 0, h = 0
    cdef bytes name, value, token
    cdef char* base
    for name, value in headers:
        size += len(name) + len(value)
    for token in listed:
        size += len(token)
    buffer = PyBytes_FromStringAndSize(NULL, size)
    base = PyBytes_AS_STRING(buffer)
    head._buffer = buffer
    if count:
        head._headers = <Header*>PyMem_Malloc(count * sizeof(Header))
        if head._headers == NULL:
            raise MemoryError()
        head._own_headers = True
    for name, value in headers:
        memcpy(base + at, PyBytes_AS_STRING(name), len(name))
        head._headers[h].name.at = <uint32_t>at
        head._headers[h].name.length = <uint32_t>len(name)
        at += len(name)
        memcpy(base + at, PyBytes_AS_STRING(value), len(value))
        head._headers[h].value.at = <uint32_t>at
        head._headers[h].value.length = <uint32_t>len(value)
        at += len(value)
        head._headers[h].action = (
            request_rule(PyBytes_AS_STRING(name), len(name)) if request else response_rule(PyBytes_AS_STRING(name), len(name))
        )
        head._headers[h].notable = notable_kind(PyBytes_AS_STRING(name), len(name))
        h += 1
    head._count = count
    head._header_list = headers
    head._options = listed
    if listed:
        head._listed = <Span*>PyMem_Malloc(len(listed) * sizeof(Span))
        if head._listed == NULL:
            raise MemoryError()
        for token in listed:
            memcpy(base + at, PyBytes_AS_STRING(token), len(token))
            head._listed[head._listed_count].at = <uint32_t>at
            head._listed[head._listed_count].length = <uint32_t>len(token)
            head._listed_count += 1
            at += len(token)
    return 0


cdef frozenset IDEMPOTENT_METHODS = frozenset({b"GET", b"HEAD", b"OPTIONS", b"TRACE", b"PUT", b"DELETE"})


cdef class RequestHead(_Head):
    cdef readonly bytes method
    cdef readonly bytes target
    cdef readonly str http_version
    cdef readonly object host            # bytes, or None
    cdef readonly object content_length  # int, or None
    cdef readonly bint chunked
    cdef readonly bint keep_alive
    cdef readonly bint upgrade           # Connection: upgrade + Upgrade: ... (llhttp's definition)
    cdef readonly bint plain             # no body and no upgrade: relayed in the socket callbacks

    def __init__(
        self,
        *,
        bytes method,
        bytes target,
        str http_version,
        list headers,
        host,
        content_length,
        bint chunked,
        bint keep_alive,
        bint upgrade,
        frozenset connection_options,
    ):
        self.method = method
        self.target = target
        self.http_version = http_version
        self.host = host
        self.content_length = content_length
        self.chunked = chunked
        self.keep_alive = keep_alive
        self.upgrade = upgrade
        self.plain = not (chunked or content_length or upgrade)
        _build(self, headers, connection_options, True)

    def __repr__(self):
        return f"RequestHead({self.method!r} {self.target!r} HTTP/{self.http_version}, host={self.host!r})"

    @property
    def has_body(self):
        return self.chunked or bool(self.content_length)

    @property
    def idempotent(self):
        return self.method in IDEMPOTENT_METHODS


cdef class ResponseHead(_Head):
    cdef readonly int status
    cdef object _reason                  # bytes, made when first asked for (a head passed on never is)
    cdef Py_ssize_t _reason_length       # until then: its length at the start of the buffer
    cdef readonly object content_length  # int, or None
    cdef readonly bint chunked
    cdef readonly bint keep_alive

    def __init__(
        self,
        *,
        int status,
        bytes reason,
        list headers,
        content_length,
        bint chunked,
        bint keep_alive,
        frozenset connection_options,
    ):
        self.status = status
        self._reason = reason
        self.content_length = content_length
        self.chunked = chunked
        self.keep_alive = keep_alive
        _build(self, headers, connection_options, False)

    def __repr__(self):
        return f"ResponseHead({self.status} {self.reason!r})"

    @property
    def reason(self):
        if self._reason is None:
            self._reason = PyBytes_FromStringAndSize(PyBytes_AS_STRING(self._buffer), self._reason_length)
        return self._reason

    @property
    def informational(self):
        return 100 <= self.status < 200

    @property
    def bodyless(self):
        """Never has a body, whatever its headers say (RFC 9112 §6.3)."""
        return 100 <= self.status < 200 or self.status == 204 or self.status == 304


# Parsers


cdef object _METHODS = [None] * 256          # llhttp's method numbers -> their names as bytes, made once each
cdef str _V11 = "1.1"
cdef str _V10 = "1.0"


cdef bytes method_name(uint8_t method):
    name = _METHODS[method]
    if name is None:
        name = _METHODS[method] = <bytes>llhttp_method_name(method)
    return name


cdef class _Parser:
    """llhttp, its callbacks, the head's bytes being collected, and what `wire._Parser` keeps."""
    cdef llhttp_t _parser
    cdef llhttp_settings_t _settings
    cdef object _on_message_begin
    cdef object _on_head
    cdef object _on_body
    cdef object _on_message_complete
    cdef Py_ssize_t _max_header_bytes
    cdef int _state
    cdef Py_ssize_t _unfinished_head_bytes
    cdef Py_ssize_t _head_bound
    cdef object _pending_head
    cdef object _error               # raised in a callback, to be raised by feed()
    cdef object _failed              # the ProxyError that ended this parser
    # The head being collected: its first line's text (URL or reason phrase) then its header names and values.
    cdef char* _buffer
    cdef Py_ssize_t _length
    cdef Py_ssize_t _capacity
    cdef Py_ssize_t _line_length
    cdef Header* _headers
    cdef Py_ssize_t _count           # complete headers
    cdef Py_ssize_t _header_capacity
    cdef bint _in_name               # a header name is being received
    cdef bint _request

    def __dealloc__(self):
        PyMem_Free(self._buffer)
        PyMem_Free(self._headers)

    cdef int _setup(self, owner, Py_ssize_t max_header_bytes, bint request) except -1:
        self._request = request
        if owner is not None:  # else a subclass takes the events itself (its `_notify_*`)
            self._on_message_begin = owner.on_message_begin if not request else None
            self._on_head = owner.on_head
            self._on_body = owner.on_body
            self._on_message_complete = owner.on_message_complete
        self._max_header_bytes = max_header_bytes
        self._capacity = 1024
        self._buffer = <char*>PyMem_Malloc(self._capacity)
        self._header_capacity = 32
        self._headers = <Header*>PyMem_Malloc(self._header_capacity * sizeof(Header))
        if self._buffer == NULL or self._headers == NULL:
            raise MemoryError()
        llhttp_settings_init(&self._settings)
        self._settings.on_message_begin = cb_message_begin
        self._settings.on_header_field = cb_header_field
        self._settings.on_header_field_complete = cb_header_field_complete
        self._settings.on_header_value = cb_header_value
        self._settings.on_header_value_complete = cb_header_value_complete
        self._settings.on_headers_complete = cb_headers_complete
        self._settings.on_body = cb_body
        self._settings.on_message_complete = cb_message_complete
        if request:
            self._settings.on_url = cb_first_line
            llhttp_init(&self._parser, HTTP_REQUEST, &self._settings)
        else:
            self._settings.on_status = cb_first_line
            llhttp_init(&self._parser, HTTP_RESPONSE, &self._settings)
        self._parser.data = <void*>self
        return 0

    # Collecting the head (called by llhttp through the cb_* functions; -1 stops it)

    cdef int _append(self, const char* at, size_t n) noexcept:
        cdef Py_ssize_t wanted = self._length + <Py_ssize_t>n
        cdef Py_ssize_t capacity = self._capacity
        cdef char* grown
        if wanted > 0xFFFFFFF:  # positions are 32-bit; the head-size guard stops far earlier
            return -1
        if wanted > capacity:
            while capacity < wanted:
                capacity *= 2
            grown = <char*>PyMem_Realloc(self._buffer, capacity)
            if grown == NULL:
                return -1
            self._buffer = grown
            self._capacity = capacity
        memcpy(self._buffer + self._length, at, n)
        self._length = wanted
        return 0

    cdef int message_begin(self) noexcept:
        self._state = IN_HEAD
        self._length = 0
        self._line_length = 0
        self._count = 0
        self._in_name = False
        try:
            self._notify_begin()
        except BaseException as error:
            self._error = error
            return -1
        return 0

    cdef int first_line(self, const char* at, size_t n) noexcept:
        if self._append(at, n) < 0:
            return self._fail_memory()
        self._line_length += n
        return 0

    cdef int header_field(self, const char* at, size_t n) noexcept:
        cdef Header* grown
        if self._state != IN_HEAD:
            return 0  # a chunked trailer: dropped (the proxy forwards no trailers)
        if not self._in_name:
            if self._count == self._header_capacity:
                grown = <Header*>PyMem_Realloc(self._headers, 2 * self._header_capacity * sizeof(Header))
                if grown == NULL:
                    return self._fail_memory()
                self._headers = grown
                self._header_capacity *= 2
            self._in_name = True
            self._headers[self._count].name.at = <uint32_t>self._length
            self._headers[self._count].name.length = 0
            self._headers[self._count].value.at = <uint32_t>self._length
            self._headers[self._count].value.length = 0
        if self._append(at, n) < 0:
            return self._fail_memory()
        self._headers[self._count].name.length += <uint32_t>n
        return 0

    cdef int header_field_complete(self) noexcept:
        if self._state == IN_HEAD:
            self._in_name = False
            self._headers[self._count].value.at = <uint32_t>self._length
        return 0

    cdef int header_value(self, const char* at, size_t n) noexcept:
        if self._state != IN_HEAD:
            return 0
        if self._append(at, n) < 0:
            return self._fail_memory()
        self._headers[self._count].value.length += <uint32_t>n
        return 0

    cdef int header_value_complete(self) noexcept:
        cdef Header* header
        cdef const char* name
        if self._state != IN_HEAD:
            return 0
        header = &self._headers[self._count]
        name = self._buffer + header.name.at
        header.action = request_rule(name, header.name.length) if self._request else response_rule(name, header.name.length)
        header.notable = notable_kind(name, header.name.length)
        self._count += 1
        return 0

    cdef int headers_complete(self) noexcept:
        cdef object head
        try:
            if self._head_bound > self._max_header_bytes and self._head_size() > self._max_header_bytes:
                raise self._too_large()
            head = self._make_head()
        except BaseException as error:
            self._error = error
            return -1
        self._pending_head = head
        self._state = IN_BODY
        self._unfinished_head_bytes = 0
        return 1 if self._parser.upgrade else 0

    cdef int body(self, const char* at, size_t n) noexcept:
        try:
            if self._pending_head is not None:
                self._release_pending_head()
            self._notify_body(at, n)
        except BaseException as error:
            self._error = error
            return HPE_USER
        return 0

    cdef int message_complete(self) noexcept:
        try:
            if self._pending_head is not None:
                self._release_pending_head()
            self._state = IDLE
            self._unfinished_head_bytes = 0
            self._notify_complete()
        except BaseException as error:
            self._error = error
            return -1
        return 0

    # What the owner is told (see `wire`); a subclass may take the events itself instead.

    cdef int _notify_begin(self) except -1:
        if self._on_message_begin is not None:
            self._on_message_begin()
        return 0

    cdef int _notify_head(self, object head) except -1:
        self._on_head(head)
        return 0

    cdef int _notify_body(self, const char* at, size_t n) except -1:
        self._on_body(PyBytes_FromStringAndSize(at, n))
        return 0

    cdef int _notify_complete(self) except -1:
        self._on_message_complete()
        return 0

    cdef int _fail_memory(self) noexcept:
        try:
            raise MemoryError()
        except BaseException as error:
            self._error = error
        return HPE_USER

    cdef Py_ssize_t _head_size(self) noexcept:
        # wire._head_size: the first line with its allowance, each header with its ": " and CRLF.
        return self._length + FIRST_LINE_OVERHEAD + HEADER_LINE_OVERHEAD * self._count

    cdef int _release_pending_head(self) except -1:
        head = self._pending_head
        if head is not None:
            self._pending_head = None
            self._notify_head(head)
        return 0

    cdef object _too_large(self):
        raise NotImplementedError

    cdef object _malformed(self, str detail):
        raise NotImplementedError

    cdef object _make_head(self):
        raise NotImplementedError

    cdef bytes _head_buffer(self, Py_ssize_t* headers_at):
        """The head's text, then its headers' positions (aligned), in one bytes object: one allocation a head."""
        cdef Py_ssize_t at = (self._length + 7) & ~7
        cdef bytes buffer = PyBytes_FromStringAndSize(NULL, at + self._count * sizeof(Header))
        cdef char* data = <char*>PyBytes_AS_STRING(buffer)
        memcpy(data, self._buffer, self._length)
        memcpy(data + at, self._headers, self._count * sizeof(Header))
        headers_at[0] = at
        return buffer

    def feed(self, bytes data):
        """Parse `data` (see `wire`): -1, or where the bytes after an upgrade's head start in `data`."""
        return self._feed(data)

    cdef Py_ssize_t _feed(self, bytes data) except -2:
        cdef Py_ssize_t offset
        cdef const char* start = PyBytes_AS_STRING(data)
        cdef Py_ssize_t n = PyBytes_GET_SIZE(data)
        cdef llhttp_errno_t status
        if self._failed is not None:
            raise self._failed
        self._head_bound = self._unfinished_head_bytes + n
        if self._state != IN_BODY:
            self._unfinished_head_bytes += n
        status = llhttp_execute(&self._parser, start, n)
        if status == HPE_PAUSED_UPGRADE and self._parser.upgrade:
            offset = llhttp_get_error_pos(&self._parser) - start
            llhttp_resume_after_upgrade(&self._parser)
            self._release_pending_head()
            return offset
        if status != HPE_OK:
            self._pending_head = None  # never hand out a head llhttp rejected
            error = self._error
            self._error = None
            if error is None:
                error = self._malformed((<bytes>llhttp_get_error_reason(&self._parser)).decode("latin-1"))
            if isinstance(error, ProxyError):
                self._failed = error
            raise error
        if self._pending_head is not None:
            self._release_pending_head()
        if self._state != IN_BODY and self._unfinished_head_bytes > self._max_header_bytes:
            self._failed = self._too_large()
            raise self._failed
        return -1


cdef class RequestParser(_Parser):
    """Requests from a client, one after another on the same connection (see `wire`)."""

    def __init__(self, owner, Py_ssize_t max_header_bytes):
        self._setup(owner, max_header_bytes, True)

    cdef object _too_large(self):
        return HeadersTooLarge("request headers too large")

    cdef object _malformed(self, str detail):
        return BadRequest(f"malformed request: {detail}")

    cdef object _make_head(self):
        """The checks of `wire.RequestParser.on_headers_complete`, in its order, then the head."""
        cdef llhttp_t* parser = &self._parser
        cdef const char* base = self._buffer
        cdef Py_ssize_t h, hosts = 0, lengths = 0, encodings = 0
        cdef Header* host = NULL
        cdef Header* length = NULL
        cdef Header* encoding = NULL
        cdef RequestHead head
        cdef bytes buffer
        cdef Py_ssize_t headers_at
        method = method_name(parser.method)
        if parser.http_major == 1 and parser.http_minor == 1:
            version = _V11
        elif parser.http_major == 1 and parser.http_minor == 0:
            version = _V10
        else:
            version = f"{parser.http_major}.{parser.http_minor}"
            raise BadRequest(f"HTTP/{version} is not supported", status=505, code="HTTPVersionNotSupported")
        if method == b"CONNECT":
            raise BadRequest("CONNECT is not supported", status=405, code="MethodNotAllowed")
        if not (
            (self._line_length > 0 and base[0] == b'/')
            or (self._line_length == 1 and base[0] == b'*' and method == b"OPTIONS")
        ):
            raise BadRequest("only origin-form request targets are accepted")
        for h in range(self._count):
            kind = self._headers[h].notable
            if kind == N_HOST:
                hosts += 1
                if host == NULL:
                    host = &self._headers[h]
            elif kind == N_CONTENT_LENGTH:
                lengths += 1
                if length == NULL:
                    length = &self._headers[h]
            elif kind == N_TRANSFER_ENCODING:
                encodings += 1
                if encoding == NULL:
                    encoding = &self._headers[h]
        if hosts > 1:
            raise BadRequest("more than one Host header")
        if host == NULL and version is not _V10:
            raise BadRequest("missing Host header")
        if host != NULL and not valid_host(base + host.value.at, host.value.length):
            raise BadRequest("invalid Host header")
        if lengths > 1:
            raise BadRequest("more than one Content-Length header")
        if encodings > 1:
            raise BadRequest("more than one Transfer-Encoding header")
        if lengths and encodings:
            raise BadRequest("both Content-Length and Transfer-Encoding")
        if encoding != NULL and not is_chunked(base + encoding.value.at, encoding.value.length):
            raise BadRequest("unsupported Transfer-Encoding (only chunked is accepted)")
        content_length = None
        if length != NULL:
            if not all_digits(base + length.value.at, length.value.length):
                raise BadRequest("invalid Content-Length")
            content_length = int(PyBytes_FromStringAndSize(base + length.value.at, length.value.length))
        upgrade = parser.upgrade != 0
        if upgrade and (encoding != NULL or content_length):
            raise BadRequest("an upgrade request cannot carry a body")

        buffer = self._head_buffer(&headers_at)
        head = RequestHead.__new__(RequestHead)
        head._take(buffer, headers_at, self._count)
        head.method = method
        head.target = PyBytes_FromStringAndSize(base, self._line_length)
        head.http_version = version
        head.host = None if host == NULL else PyBytes_FromStringAndSize(base + host.value.at, host.value.length)
        head.content_length = content_length
        head.chunked = encoding != NULL
        head.keep_alive = llhttp_should_keep_alive(parser) != 0
        head.upgrade = upgrade
        head.plain = not (encoding != NULL or content_length or upgrade)
        return head


cdef class ResponseParser(_Parser):
    """Responses from an upstream, one after another on the same connection (see `wire`)."""

    def __init__(self, owner, Py_ssize_t max_header_bytes):
        self._setup(owner, max_header_bytes, False)

    cdef object _too_large(self):
        return UpstreamFailed("upstream response headers too large")

    cdef object _malformed(self, str detail):
        return UpstreamFailed(f"malformed upstream response: {detail}")

    cdef object _make_head(self):
        cdef const char* base = self._buffer
        cdef Py_ssize_t h
        cdef Header* length = NULL
        cdef Header* encoding = NULL
        cdef ResponseHead head
        cdef bytes buffer
        cdef Py_ssize_t headers_at
        for h in range(self._count):
            kind = self._headers[h].notable
            if kind == N_CONTENT_LENGTH:
                if length == NULL:
                    length = &self._headers[h]
            elif kind == N_TRANSFER_ENCODING:
                if encoding == NULL:
                    encoding = &self._headers[h]
        if encoding != NULL and not is_chunked(base + encoding.value.at, encoding.value.length):
            # Anything else would have to be decoded or passed on verbatim; no app server sends it.
            raise UpstreamFailed("unsupported Transfer-Encoding in upstream response")
        buffer = self._head_buffer(&headers_at)
        head = ResponseHead.__new__(ResponseHead)
        head._take(buffer, headers_at, self._count)
        head.status = self._parser.status_code
        head._reason_length = self._line_length
        head.content_length = (
            int(PyBytes_FromStringAndSize(base + length.value.at, length.value.length))
            if length != NULL and encoding == NULL else None
        )
        head.chunked = encoding != NULL
        head.keep_alive = llhttp_should_keep_alive(&self._parser) != 0
        return head


# llhttp's callbacks: C functions that hand over to the parser whose `data` it is.

cdef int cb_message_begin(llhttp_t* p) noexcept:
    return (<_Parser>p.data).message_begin()

cdef int cb_first_line(llhttp_t* p, const char* at, size_t n) noexcept:
    return (<_Parser>p.data).first_line(at, n)

cdef int cb_header_field(llhttp_t* p, const char* at, size_t n) noexcept:
    return (<_Parser>p.data).header_field(at, n)

cdef int cb_header_field_complete(llhttp_t* p) noexcept:
    return (<_Parser>p.data).header_field_complete()

cdef int cb_header_value(llhttp_t* p, const char* at, size_t n) noexcept:
    return (<_Parser>p.data).header_value(at, n)

cdef int cb_header_value_complete(llhttp_t* p) noexcept:
    return (<_Parser>p.data).header_value_complete()

cdef int cb_headers_complete(llhttp_t* p) noexcept:
    return (<_Parser>p.data).headers_complete()

cdef int cb_body(llhttp_t* p, const char* at, size_t n) noexcept:
    return (<_Parser>p.data).body(at, n)

cdef int cb_message_complete(llhttp_t* p) noexcept:
    return (<_Parser>p.data).message_complete()


# Rewriting heads (the rules: see `wire`)


cdef bint bearer_platform_token(const char* value, Py_ssize_t n, bytes prefix) noexcept:
    """`Bearer <prefix>...` as clients write it (`wire.is_platform_credential`'s first case)."""
    cdef Py_ssize_t i = 7
    cdef Py_ssize_t k = PyBytes_GET_SIZE(prefix)
    while i < n and is_space(<uint8_t>value[i]):
        i += 1
    return n - i >= k and memcmp(value + i, PyBytes_AS_STRING(prefix), k) == 0


def upstream_request_head(RequestHead head, *, bytes client_address, bytes scheme, credential_rules):
    """The request head to send upstream (HTTP/1.1), `credential_rules` set for space upstreams."""
    cdef char stack[STACK_OUT]
    cdef Out out
    cdef bytes host = head.host if head.host is not None else b""
    cdef bytes token_prefix = None
    cdef bytes session_cookie = None
    cdef bytes length_line = None
    cdef Py_ssize_t bound, upgrade_to
    if credential_rules is not None:
        token_prefix = credential_rules.token_prefix
        session_cookie = credential_rules.session_cookie
    if head.chunked:
        length_line = b"Transfer-Encoding: chunked\r\n"
    elif head.content_length is not None:
        length_line = b"Content-Length: %d\r\n" % head.content_length
    # Fixed text (the request line's, Host, Connection/Upgrade, the three forwarding headers): under 128 bytes.
    bound = (
        len(head.method) + len(head.target) + 2 * len(host) + len(client_address) + len(scheme) + 128
        + PyBytes_GET_SIZE(head._buffer) + 4 * head._count + (len(length_line) if length_line is not None else 0)
    )
    out_open(&out, stack, bound)
    try:
        out_put_bytes(&out, head.method)
        out_put(&out, b" ", 1)
        out_put_bytes(&out, head.target)
        out_put(&out, b" HTTP/1.1\r\nHost: ", 17)
        out_put_bytes(&out, host)
        out_put(&out, b"\r\n", 2)
        upgrade_to = _write_request_headers(head, &out, token_prefix, session_cookie)
        if length_line is not None:
            out_put_bytes(&out, length_line)
        if upgrade_to >= 0:
            out_put(&out, b"Connection: upgrade\r\nUpgrade: ", 30)
            out_put(&out, PyBytes_AS_STRING(head._buffer) + head._headers[upgrade_to].value.at,
                    head._headers[upgrade_to].value.length)
            out_put(&out, b"\r\n", 2)
        out_put(&out, b"X-Forwarded-For: ", 17)
        out_put_bytes(&out, client_address)
        if head.host is not None:
            out_put(&out, b"\r\nX-Forwarded-Host: ", 20)
            out_put_bytes(&out, host)
        out_put(&out, b"\r\nX-Forwarded-Proto: ", 21)
        out_put_bytes(&out, scheme)
        out_put(&out, b"\r\n\r\n", 4)
        return PyBytes_FromStringAndSize(out.data, out.length)
    finally:
        out_free(&out)


cdef Py_ssize_t _write_request_headers(RequestHead head, Out* out, bytes token_prefix, bytes session_cookie) except -2:
    """The client's headers as the upstream gets them; returns the index of the Upgrade header to pass on, or -1.
    `token_prefix` is None for routes that are not spaces (the API reads the platform's credentials itself)."""
    cdef const char* base = PyBytes_AS_STRING(head._buffer)
    cdef Py_ssize_t h, n, upgrade_to = -1
    cdef Header* header
    cdef uint8_t action
    cdef const char* name
    cdef const char* value
    cdef char* cookie
    for h in range(head._count):
        header = &head._headers[h]
        name = base + header.name.at
        value = base + header.value.at
        n = header.value.length
        action = header.action
        if head._listed_count and action != UPGRADE and (
            head._is_listed(name, header.name.length, False) or head._is_listed(name, header.name.length, True)
        ):
            action = DROP  # listed in Connection: hop-by-hop for this request
        if action == PASS:
            pass
        elif action == DROP:
            continue
        elif action == UPGRADE:
            if head.upgrade:
                upgrade_to = h
            continue
        elif token_prefix is None:
            pass
        elif action == AUTHORIZATION:
            if n >= 7 and memcmp(value, b"Bearer ", 7) == 0:
                if bearer_platform_token(value, n, token_prefix):
                    continue
            elif _reference.is_platform_credential(PyBytes_FromStringAndSize(value, n), token_prefix):
                continue
        elif action == COOKIE:
            if n == 0:
                continue  # nothing left of it for the app, as of a value that loses its only pair
            if find(value, n, PyBytes_AS_STRING(session_cookie), PyBytes_GET_SIZE(session_cookie), 0) >= 0:
                # The pair is cut out where the value goes in the output (room enough: the whole value fits).
                cookie = out.data + out.length + header.name.length + 2
                memcpy(cookie, value, n)
                n = without_cookie_in_place(cookie, n, PyBytes_AS_STRING(session_cookie), PyBytes_GET_SIZE(session_cookie))
                if n == 0:
                    continue
                out_put(out, name, header.name.length)
                out_put(out, b": ", 2)
                out.length += n
                out_put(out, b"\r\n", 2)
                continue
        else:  # HF_AUTHORIZATION: dropped
            continue
        out_put(out, name, header.name.length)
        out_put(out, b": ", 2)
        out_put(out, value, n)
        out_put(out, b"\r\n", 2)
    return upgrade_to


def client_response_head(ResponseHead head, *, int framing, connection, bint host_only_cookies, bytes added=b""):
    """The response head to send to the client. `connection`: b"close", b"keep-alive", b"upgrade" or None.
    `added`: header lines of the proxy's own, sent after the upstream's (see `wire.client_response_head`)."""
    return _with_added(_client_response_head(head, framing, connection, host_only_cookies), added)


cdef inline bytes _with_added(bytes head, bytes added):
    return head[:len(head) - 2] + added + b"\r\n" if added else head


cdef bytes _client_response_head(ResponseHead head, int framing, object connection, bint host_only_cookies):
    cdef const char* base = PyBytes_AS_STRING(head._buffer)
    cdef char stack[STACK_OUT]
    cdef char number[32]
    cdef Out out
    cdef Py_ssize_t h, bound, digits
    cdef Header* header
    cdef uint8_t action
    cdef const char* name
    cdef bint upgrading = connection is not None and connection == b"upgrade"
    cdef bytes reason = head.reason or _reference.reason_phrase(head.status)
    cdef bytes cookie
    cdef bytes length_line = None
    cdef list rewritten = None
    if framing == BODY_LENGTH:
        length_line = b"Content-Length: %d\r\n" % head.content_length
    # Fixed text (status line, Transfer-Encoding, Connection, the blank line): under 128 bytes.
    bound = (
        len(reason) + 128 + PyBytes_GET_SIZE(head._buffer) + 4 * head._count
        + (len(length_line) if length_line is not None else 0) + (len(connection) if connection is not None else 0)
    )
    for h in range(head._count):  # cookies made host-only are rewritten first: their new length counts
        header = &head._headers[h]
        if (
            host_only_cookies
            and header.action == SET_COOKIE
            and contains_domain(base + header.value.at, header.value.length)
        ):
            if rewritten is None:
                rewritten = [None] * head._count
            cookie = _reference.without_cookie_domain(
                PyBytes_FromStringAndSize(base + header.value.at, header.value.length)
            )
            rewritten[h] = cookie
            bound += len(cookie)
    out_open(&out, stack, bound)
    try:
        digits = snprintf(number, 32, "%d", head.status)
        out_put(&out, b"HTTP/1.1 ", 9)
        out_put(&out, number, digits)
        out_put(&out, b" ", 1)
        out_put_bytes(&out, reason)
        out_put(&out, b"\r\n", 2)
        for h in range(head._count):
            header = &head._headers[h]
            name = base + header.name.at
            action = header.action
            if head._listed_count and (action == PASS or action == SET_COOKIE) and head._is_listed(
                name, header.name.length, False
            ):
                continue  # listed in Connection: hop-by-hop for this response
            if action == PASS or action == SET_COOKIE:
                pass
            elif not ((action == UPGRADE and upgrading) or (action == LENGTH and framing == BODY_NONE)):
                continue  # dropped (kept: a 101's Upgrade; a HEAD/304 answer's length, as information only)
            out_put(&out, name, header.name.length)
            out_put(&out, b": ", 2)
            if rewritten is not None and rewritten[h] is not None:
                out_put_bytes(&out, rewritten[h])
            else:
                out_put(&out, base + header.value.at, header.value.length)
            out_put(&out, b"\r\n", 2)
        if framing == BODY_LENGTH:
            out_put_bytes(&out, length_line)
        elif framing == BODY_CHUNKED:
            out_put(&out, b"Transfer-Encoding: chunked\r\n", 28)
        if connection is not None:
            out_put(&out, b"Connection: ", 12)
            out_put_bytes(&out, connection)
            out_put(&out, b"\r\n", 2)
        out_put(&out, b"\r\n", 2)
        return PyBytes_FromStringAndSize(out.data, out.length)
    finally:
        out_free(&out)


def response_framing(ResponseHead response, RequestHead request):
    """How the final response to `request` is framed towards the client (see `wire.response_framing`)."""
    return _response_framing(response, request)


cdef int _response_framing(ResponseHead response, RequestHead request) except -1:
    cdef int status = response.status
    if 100 <= status < 200 or status == 204 or status == 304 or request.method == b"HEAD":
        return BODY_NONE
    if response.content_length is not None:
        return BODY_LENGTH
    return BODY_UNTIL_CLOSE if _is_http10(request) else BODY_CHUNKED


cdef inline bint _is_http10(RequestHead request) except -1:
    return request.http_version is _V10 or request.http_version == _V10


def leading_head_length(bytes data):
    """The length of the HTTP/1.1 response head that starts `data`, its blank line included; 0 if none does."""
    return _leading_head_length(data)


cdef Py_ssize_t _leading_head_length(bytes data) noexcept:
    cdef const char* s = PyBytes_AS_STRING(data)
    cdef Py_ssize_t n = PyBytes_GET_SIZE(data)
    cdef Py_ssize_t end
    if n < 9 or memcmp(s, b"HTTP/1.1 ", 9) != 0:
        return 0
    end = find(s, n, b"\r\n\r\n", 4, 9)
    return end + 4 if end >= 0 else 0


def passes_unchanged(ResponseHead head, *, int framing, connection):
    """True when `client_response_head` would send this head as the upstream sent it, up to the spelling of
    Content-Length (see `wire.passes_unchanged`)."""
    return _passes_unchanged(head, framing, connection)


cdef bint _passes_unchanged(ResponseHead head, int framing, object connection) noexcept:
    cdef Py_ssize_t h
    cdef uint8_t action
    if framing != BODY_LENGTH or connection is not None or head._listed_count:
        return False
    for h in range(head._count):
        action = head._headers[h].action
        if action != PASS and action != LENGTH:
            return False
    return True


def without_cookie(bytes cookie_header, bytes name):
    """`wire.without_cookie`, as the rewriting does it (for tests and callers outside the rewriting)."""
    cdef Py_ssize_t n = PyBytes_GET_SIZE(cookie_header)
    cdef bytes copy = PyBytes_FromStringAndSize(PyBytes_AS_STRING(cookie_header), n)
    n = without_cookie_in_place(<char*>PyBytes_AS_STRING(copy), n, PyBytes_AS_STRING(name), PyBytes_GET_SIZE(name))
    return copy[:n]



# Framing responses (see `wire.ResponseFramer`)

cdef bytes LAST_CHUNK = b"0\r\n\r\n"


cdef class ResponseFramer


cdef class _FramerParser(ResponseParser):
    """The framer's response parser: it hands what it parses to the framer directly, with no Python call."""
    cdef ResponseFramer framer

    def __init__(self, ResponseFramer framer, Py_ssize_t max_header_bytes):
        self.framer = framer
        self._setup(None, max_header_bytes, False)

    cdef int _notify_begin(self) except -1:
        if self.framer.done:
            self.framer.unexpected = True  # a second response to one request
        return 0

    cdef int _notify_head(self, object head) except -1:
        return self.framer._head(<ResponseHead>head)

    cdef int _notify_body(self, const char* at, size_t n) except -1:
        return self.framer._body(at, n)

    cdef int _notify_complete(self) except -1:
        return self.framer._complete()


cdef class ResponseFramer:
    """What a client gets of its upstream's answer (see `wire.ResponseFramer`): the same steps, with the parser's
    events handled in C and the client's bytes gathered in one buffer."""
    cdef _FramerParser _parser
    cdef Py_ssize_t _max_header_bytes
    cdef RequestHead _request
    cdef bint _host_only_cookies
    cdef bytes _added                    # the proxy's own header lines for the final response
    cdef readonly object response        # the final response's ResponseHead, once parsed
    cdef readonly int framing
    cdef readonly bint close_client
    cdef readonly bint done
    cdef readonly bint complete
    cdef readonly bint unexpected
    cdef readonly bint switched          # a 101 to an upgrade request: the rest is another protocol
    cdef public bint request_pending     # set by the owner: the client is still sending the request's body
    cdef Py_ssize_t _unfinished_head_bytes
    cdef bytes _chunk
    cdef bint _passed_unchanged
    cdef Py_ssize_t _head_length         # of a head passed on as it came
    cdef char* _out
    cdef Py_ssize_t _out_length
    cdef Py_ssize_t _out_capacity

    def __cinit__(self):
        self._out_capacity = 4096
        self._out = <char*>PyMem_Malloc(self._out_capacity)
        if self._out == NULL:
            raise MemoryError()

    def __dealloc__(self):
        PyMem_Free(self._out)

    def __init__(self, Py_ssize_t max_header_bytes):
        self._max_header_bytes = max_header_bytes
        self._reset()

    cdef void _reset(self) noexcept:
        self.response = None
        self.framing = BODY_NONE
        self.close_client = False
        self.done = False
        self.complete = False
        self.unexpected = False
        self.switched = False
        self._unfinished_head_bytes = 0
        self._chunk = None
        self._passed_unchanged = False
        self._head_length = 0
        self._out_length = 0

    def start(self, RequestHead request not None, *, bint host_only_cookies, bytes added=b""):
        """A new exchange on this connection: the answer to `request` comes next."""
        if self._parser is None or not self.complete or self.switched:  # new, or not in step any more
            self._parser = _FramerParser(self, self._max_header_bytes)
        self._reset()
        self.request_pending = False
        self._request = request
        self._host_only_cookies = host_only_cookies
        self._added = added

    def feed(self, bytes data):
        """What the client gets now for these bytes of the upstream's answer (b"" for nothing yet)."""
        cdef Py_ssize_t upgraded_at
        if self._request is None:
            raise RuntimeError("start() first")
        if self.response is None:
            self._chunk = data if self._unfinished_head_bytes == 0 else None
            self._unfinished_head_bytes += PyBytes_GET_SIZE(data)
        self._out_length = 0
        try:
            upgraded_at = self._parser._feed(data)
        except ProxyError:
            if not self.done:
                raise
            self.unexpected = True  # garbage after a complete response: it stands, the connection is not reused
            upgraded_at = -1
        if self.response is None and self._unfinished_head_bytes > self._max_header_bytes:
            raise UpstreamFailed("upstream response headers too large")  # a head that never ends
        if upgraded_at >= 0 and self.switched and upgraded_at < PyBytes_GET_SIZE(data):
            # the first bytes of the new protocol, for the client as they came
            self._emit(PyBytes_AS_STRING(data) + upgraded_at, PyBytes_GET_SIZE(data) - upgraded_at)
        if self._chunk is not None:
            self._chunk = None
            if (
                self._passed_unchanged
                and self.complete
                and not self.unexpected
                and self.response is not None
                and PyBytes_GET_SIZE(data) == self._head_length + ((<ResponseHead>self.response).content_length or 0)
            ):
                return data  # head and body as they came, and nothing else in these bytes: the client's answer
        if self._out_length == 0:
            return b""
        return PyBytes_FromStringAndSize(self._out, self._out_length)

    def at_eof(self):
        """The upstream closed: what ends a body that runs until then (the exchange is then done), or None."""
        cdef ResponseHead response
        if self.response is None or self.done:
            return None
        response = <ResponseHead>self.response
        if response.chunked or response.content_length is not None or self.framing == BODY_NONE:
            return None
        self.done = self.unexpected = True  # complete, and the connection is spent
        return LAST_CHUNK if self.framing == BODY_CHUNKED else b""

    # The parser's events

    cdef int _emit(self, const char* s, Py_ssize_t n) except -1:
        cdef Py_ssize_t wanted = self._out_length + n
        cdef Py_ssize_t capacity = self._out_capacity
        cdef char* grown
        if wanted > capacity:
            while capacity < wanted:
                capacity *= 2
            grown = <char*>PyMem_Realloc(self._out, capacity)
            if grown == NULL:
                raise MemoryError()
            self._out = grown
            self._out_capacity = capacity
        memcpy(self._out + self._out_length, s, n)
        self._out_length = wanted
        return 0

    cdef int _emit_bytes(self, bytes b) except -1:
        return self._emit(PyBytes_AS_STRING(b), PyBytes_GET_SIZE(b))

    cdef int _head(self, ResponseHead response) except -1:
        cdef RequestHead request = self._request
        cdef bint http10, close
        cdef int framing
        cdef Py_ssize_t length = 0
        if self.done or request is None:
            return 0
        http10 = _is_http10(request)
        if 100 <= response.status < 200:
            self._chunk = None  # the final head follows this one: not at the start of these bytes
            if response.status == 101:
                if not request.upgrade:
                    raise UpstreamFailed("upstream switched protocols without being asked to")
                self.response = response
                self.framing = BODY_NONE
                self.switched = self.done = self.close_client = True
                self._emit_bytes(_client_response_head(response, BODY_NONE, b"upgrade", self._host_only_cookies))
                return 0
            if not http10:  # 100 Continue, 103 Early Hints: HTTP/1.0 clients know none
                self._emit_bytes(_client_response_head(response, BODY_NONE, None, self._host_only_cookies))
            return 0
        self.response = response
        framing = self.framing = _response_framing(response, request)
        # After an upgrade request nothing more on the client's connection is HTTP, and one whose body is still
        # coming cannot carry the next request in time: both close.
        self.close_client = close = (
            not request.keep_alive or framing == BODY_UNTIL_CLOSE or request.upgrade or self.request_pending
        )
        connection = b"close" if close else (b"keep-alive" if http10 else None)
        if self._chunk is not None and not self._added and _passes_unchanged(response, framing, connection):
            length = _leading_head_length(self._chunk)
        if length:
            # The head the parser has just accepted starts these bytes and needs no change: pass it on as it came.
            self._passed_unchanged = True
            self._head_length = length
            self._emit(PyBytes_AS_STRING(self._chunk), length)
        else:
            self._emit_bytes(
                _with_added(_client_response_head(response, framing, connection, self._host_only_cookies), self._added)
            )
        if framing == BODY_NONE:
            self.done = True  # HEAD, 204, 304: over at the head, whatever the parser still expects
        return 0

    cdef int _body(self, const char* at, size_t n) except -1:
        cdef char size_line[24]
        cdef int digits
        if self.done:
            self.unexpected = True  # a body after a HEAD answer
        elif self.framing == BODY_CHUNKED:
            digits = snprintf(size_line, 24, "%zx\r\n", n)
            self._emit(size_line, digits)
            self._emit(at, n)
            self._emit(b"\r\n", 2)
        else:
            self._emit(at, n)
        return 0

    cdef int _complete(self) except -1:
        if self.response is None:
            return 0  # the end of an interim response: the final one follows
        if not self.done:  # (else a 204/304 answer, over at its head already)
            if self.framing == BODY_CHUNKED:
                self._emit_bytes(LAST_CHUNK)
            self.done = True
        self.complete = True
        return 0
