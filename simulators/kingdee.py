"""Local simulator of the Kingdee K3Cloud (金蝶云星空) WebAPI, written from the documentation.

It never imports the hub's connectors, mappings or canonical model: it is a second, independent
reading of the protocol, so a connector that misreads it fails here instead of being agreed with.

Protocol modelled (sources, all public):

* Endpoints: ``POST {host}/k3cloud/{ServiceName}.common.kdsvc`` with a JSON body -- official
  Python SDK ``kingdee.cdp.webapi.sdk`` (``K3CloudApiSdk.Save/View/ExecuteBillQuery`` post
  ``{"formid", "data"}`` / ``{"data"}``) and the older clients that post
  ``{"parameters": [...]}`` (C#/Java demos, ``Kingdee.BOS.WebApi.Client``). The path and the
  service names are matched case-insensitively (IIS is; clients spell ``/K3Cloud/`` and
  ``/k3cloud/``, ``Save`` and ``save``).
* Login ``AuthService.ValidateUser`` (acctID, username, password, lcid) and
  ``AuthService.LoginByAppSecret`` (acctID, username, appid, appsecret, lcid). The answer is a
  LoginResult (``LoginResultType`` 1 = success, ``KDSVCSessionId``, ``Context.SessionId``,
  ``IsSuccessByAPI``) plus the ``kdservice-sessionid`` and ``ASP.NET_SessionId`` cookies. Later
  calls carry the session as that cookie or as a ``kdservice-sessionid`` request header (the
  official SDK sends both).
* Business answers are HTTP 200 with ``Result.ResponseStatus``; ``MsgCode`` values follow the
  documented list (0 default, 1 context lost, 2 no permission, 4 exception, 8 parameter error,
  9 field/value does not exist, 10 data not found, 11 validation failed, 14 call limit ...).
  A missing or expired session is ``MsgCode 1`` / ``会话信息已丢失，请重新登录`` (message and
  shape as captured from real servers). ``ExecuteBillQuery`` answers a bare list of rows and, on
  error, the ResponseStatus wrapped as ``[[{"Result": {...}}]]``.
* A duplicate ``FBillNo`` is the coding-rule uniqueness error captured from a real server:
  ``FieldName FBillNo``, ``违反字段唯一性要求：编码唯一。[X]在当前系统中已经被使用。``, MsgCode 11.
* ``View`` answers ``{"Result": {"ResponseStatus": null, "Result": {bill}}}`` on success -- a real
  capture; the bill uses ORM property names (``BillNo``, ``CustId``, ``SaleOrderEntry`` ...),
  not the ``F`` field keys the Save model uses.
* Sessions end after ``session_ttl_s`` seconds without a call (an idle timeout, 20 minutes by
  default as on real servers); the next business call is then answered MsgCode 1.
* Status operations (``Submit``, ``Audit``, ``UnAudit``, ``CancelAssign`` 撤销, ``Delete`` and
  ``ExcuteOperation`` -- spelled so in the official SDKs -- with ``opNumber`` ``Cancel`` 作废 /
  ``UnCancel`` 反作废 / ``BillClose`` 整单关闭 / ``UnBillClose`` 反关闭) take
  ``{"formid", "data": {"Numbers": [...], "Ids": "1,2"}}`` (``ExcuteOperation`` also ``opNumber``)
  or the positional ``parameters`` form, and answer the Save envelope: ``SuccessEntitys`` for the
  bills that passed, ``Errors`` (``DIndex`` = position) for those that did not, ``IsSuccess`` only
  when all passed. Sources: the K3Cloud WebAPI 接口说明书 V2.0 (5.1.5-5.1.8 Submit/Audit/UnAudit/
  Delete), the official SDKs' ``CancelAssign``/``ExcuteOperation`` methods, and the Kingdee
  community article "K/3Cloud WebAPI 调用任意操作实现方案" (vip.kingdee.com/article/34018: void
  with ``ExcuteOperation`` ``Cancel``, whole-bill close with the bill's close operation).
  Status rules (FDocumentStatus Z 暂存, A 创建, B 审核中, C 已审核, D 重新审核; FCancelStatus
  and FCloseStatus A = no, B = yes): Submit Z/A/D -> B; Audit B -> C; UnAudit C -> D, refused
  while downstream bills exist (下推 to 发货通知单 and so on; ``add_downstream``) or the bill is
  closed; CancelAssign B -> A (D when it had been audited before); Delete only Z/A/D and no
  downstream bills (an audited bill must be un-audited first); Cancel only Z/A/D; BillClose only
  C. The refusal texts are the simulator's own (``# sim text``), MsgCode 11.
* ``session_max_calls`` (not a documented server behaviour, a stress option): a session ends
  after that many business calls, like gateways that recycle sessions; with many concurrent
  orders sharing one session this makes "lost right after a fresh login" routine.
* Faults (``FaultConfig``) hit the business services (Save, View, ExecuteBillQuery), not login.
  K3Cloud has no HTTP 429; the throttle fault therefore answers ``MsgCode 14`` (调用限制) by
  default, or an HTTP 429 with ``Retry-After`` when ``throttle_style="http429"``. The
  ``duplicate`` fault is a lost response: Save commits the bill, then answers HTTP 502.

Sales outbound (SAL_OUTSTOCK, pushed from the sales order with ``DynamicFormService.Push``) and
accounting vouchers (GL_VOUCHER) live in ``simulators/kingdee_finance.py``; this module routes
their Save, View, ExecuteBillQuery and status operations there.

Texts that no source pinned down (view not found, unknown base data, quantity, throttling) are
the simulator's own and marked ``# sim text``; clients must branch on ``IsSuccess``/``MsgCode``
and ``FieldName``, never on message text.
"""

from __future__ import annotations

import json
import random
import re
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from enum import IntEnum
from typing import TYPE_CHECKING, Any, Literal

from fastapi import FastAPI, Request
from fastapi.responses import Response

from simulators.faults import FaultConfig, FaultInjector

if TYPE_CHECKING:
    from simulators.kingdee_finance import FinanceForms

# --- protocol constants ---------------------------------------------------------------------

BASE_PATH = "k3cloud"
SERVICE_SUFFIX = ".common.kdsvc"
SERVICE_PREFIX = "kingdee.bos.webapi.servicesstub."
SVC_VALIDATE_USER = "authservice.validateuser"
SVC_LOGIN_BY_APP_SECRET = "authservice.loginbyappsecret"
SVC_LOGOUT = "authservice.logout"
SVC_SAVE = "dynamicformservice.save"
SVC_VIEW = "dynamicformservice.view"
SVC_QUERY = "dynamicformservice.executebillquery"
SVC_SUBMIT = "dynamicformservice.submit"
SVC_AUDIT = "dynamicformservice.audit"
SVC_UNAUDIT = "dynamicformservice.unaudit"
SVC_DELETE = "dynamicformservice.delete"
SVC_CANCEL_ASSIGN = "dynamicformservice.cancelassign"
SVC_PUSH = "dynamicformservice.push"
SVC_EXCUTE_OPERATION = "dynamicformservice.excuteoperation"  # sic, the official SDKs' spelling
SVC_EXECUTE_OPERATION = "dynamicformservice.executeoperation"  # newer SDKs' spelling

# FDocumentStatus values
STATUS_DRAFT, STATUS_CREATED, STATUS_AUDITING, STATUS_AUDITED, STATUS_REAUDIT = "Z", "A", "B", "C", "D"
NOT_AUDITED = {STATUS_DRAFT, STATUS_CREATED, STATUS_REAUDIT}

SESSION_COOKIE = "kdservice-sessionid"
ASPNET_COOKIE = "ASP.NET_SessionId"
SESSION_LOST_MESSAGE = "会话信息已丢失，请重新登录"

SALE_ORDER_FORM = "SAL_SaleOrder"
# forms served by simulators/kingdee_finance.py
OUTSTOCK_FORM = "SAL_OUTSTOCK"
VOUCHER_FORM = "GL_VOUCHER"
ACCOUNT_FORM = "BD_Account"
ACCOUNT_BOOK_FORM = "BD_AccountBook"
FINANCE_FORMS = (OUTSTOCK_FORM, VOUCHER_FORM)  # Save, View and the status operations
FINANCE_QUERY_FORMS = (OUTSTOCK_FORM, VOUCHER_FORM, ACCOUNT_FORM, ACCOUNT_BOOK_FORM)
MATERIAL_FORM = "BD_MATERIAL"
CUSTOMER_FORM = "BD_Customer"
DEFAULT_BILL_TYPE = "XSDD01_SYS"
DEFAULT_CURRENCY = "PRE001"
DEFAULT_TAX_RATE = Decimal("13")
MAX_QUERY_ROWS = 2000  # documented: ExecuteBillQuery "Limit" may not exceed 2000
LCID_ZH_CN = 2052

PRICE_Q = Decimal("0.000001")
AMOUNT_Q = Decimal("0.01")
CHINA_TZ = timezone(timedelta(hours=8))  # K3Cloud renders server-local (China) wall time

# Kingdee's preset currencies (币别): numbers are fixed across accounts; PRE007 = USD.
CURRENCIES: dict[str, tuple[str, str]] = {
    "PRE001": ("CNY", "人民币"),
    "PRE002": ("HKD", "香港元"),
    "PRE003": ("EUR", "欧元"),
    "PRE004": ("JPY", "日本日圆"),
    "PRE005": ("TWD", "新台币"),
    "PRE006": ("GBP", "英镑"),
    "PRE007": ("USD", "美元"),
}
BILL_TYPES: dict[str, str] = {"XSDD01_SYS": "标准销售订单"}


class MsgCode(IntEnum):
    """ResponseStatus.MsgCode values as documented (0..15)."""

    DEFAULT = 0
    CONTEXT_LOST = 1
    NO_PERMISSION = 2
    OPERATION_EMPTY = 3
    EXCEPTION = 4
    BILL_ID_EMPTY = 5
    DB_FAILED = 6
    LICENSE = 7
    PARAMETER = 8
    FIELD_NOT_FOUND = 9
    DATA_NOT_FOUND = 10
    VALIDATION = 11
    NOT_OPERABLE = 12
    NETWORK_CONTROL = 13
    CALL_LIMIT = 14
    ADMIN_LOGIN_FORBIDDEN = 15


# --- stored records -----------------------------------------------------------------------------


@dataclass(frozen=True)
class MasterRecord:
    """One base-data record (material, customer, org, currency, bill type): id, number, name."""

    id: int | str
    number: str
    name: str


@dataclass
class SaleOrderLine:
    """One FSaleOrderEntry row with its computed amounts (Decimal, never float)."""

    entry_id: int
    seq: int
    material: MasterRecord
    qty: Decimal
    price: Decimal
    tax_price: Decimal
    tax_rate: Decimal
    amount: Decimal
    all_amount: Decimal
    delivery_date: date | None
    note: str
    is_free: bool


@dataclass
class SaleOrder:
    """A stored SAL_SaleOrder bill."""

    id: int
    number: str
    bill_type: MasterRecord
    bill_date: date
    sale_org: MasterRecord
    customer: MasterRecord
    saler: str | None
    currency: MasterRecord
    note: str
    lines: list[SaleOrderLine]
    status: str
    created_at: datetime
    modified_at: datetime
    cancel_status: str = "A"  # FCancelStatus: B = voided (作废)
    close_status: str = "A"  # FCloseStatus: B = closed (整单关闭)
    was_audited: bool = False  # decides where CancelAssign goes back to (A, or D after an audit)
    downstream: list[str] | None = None  # bill numbers pushed from this one (发货通知单 ...)

    @property
    def all_amount(self) -> Decimal:
        return sum((line.all_amount for line in self.lines), Decimal("0"))

    @property
    def amount(self) -> Decimal:
        return sum((line.amount for line in self.lines), Decimal("0"))


@dataclass
class Session:
    """A logged-in session; it lives while used at least every ``session_ttl_s`` seconds."""

    sid: str
    aspnet_id: str
    user_token: str
    acct_id: str
    username: str
    last_seen: float
    calls: int = 0


@dataclass
class Counters:
    """What the simulator saw; exposed through ``state()`` for the hub's tests and benches."""

    logins: int = 0
    login_failures: int = 0
    save_calls: int = 0
    view_calls: int = 0
    query_calls: int = 0
    validation_failures: int = 0
    duplicate_bill_no_rejected: int = 0
    session_lost_responses: int = 0
    lost_responses: int = 0
    throttled: int = 0
    errors_5xx: int = 0
    submit_calls: int = 0
    audit_calls: int = 0
    unaudit_calls: int = 0
    delete_calls: int = 0
    cancel_assign_calls: int = 0
    operation_calls: int = 0
    operations_refused: int = 0
    push_calls: int = 0


class BusinessError(Exception):
    """A failed business call: the Errors list and MsgCode to answer with (HTTP 200)."""

    def __init__(self, msg_code: MsgCode, errors: list[dict[str, Any]]) -> None:
        super().__init__(errors[0]["Message"] if errors else str(msg_code))
        self.msg_code = msg_code
        self.errors = errors


def error_entry(message: str, field_name: str | None = None, d_index: int = 0) -> dict[str, Any]:
    """One ``Errors[]`` item in the documented shape."""
    return {"FieldName": field_name, "Message": message, "DIndex": d_index}


def response_status(
    *,
    success: bool,
    msg_code: MsgCode = MsgCode.DEFAULT,
    errors: list[dict[str, Any]] | None = None,
    success_entities: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """The documented ResponseStatus; ErrorCode is 500 on failure (as real servers answer)."""
    return {
        "ErrorCode": 0 if success else 500,
        "IsSuccess": success,
        "Errors": errors or [],
        "SuccessEntitys": success_entities or [],
        "SuccessMessages": [],
        "MsgCode": int(msg_code),
    }


def failure_result(msg_code: MsgCode, errors: list[dict[str, Any]]) -> dict[str, Any]:
    """``{"Result": {"ResponseStatus": {...}}}`` -- how Save/View and the session check fail."""
    return {"Result": {"ResponseStatus": response_status(success=False, msg_code=msg_code, errors=errors)}}


# --- small parsing helpers ----------------------------------------------------------------------


def ci_get(mapping: Mapping[str, Any], key: str, default: Any = None) -> Any:
    """Case-insensitive key lookup: K3Cloud field keys and parameter names ignore case."""
    wanted = key.lower()
    for k, v in mapping.items():
        if isinstance(k, str) and k.lower() == wanted:
            return v
    return default


def ci_has(mapping: Mapping[str, Any], key: str) -> bool:
    wanted = key.lower()
    return any(isinstance(k, str) and k.lower() == wanted for k in mapping)


def as_bool(value: Any, default: bool = False) -> bool:
    """K3Cloud flags arrive as booleans or as the strings "true"/"false"."""
    if value is None:
        return default
    if isinstance(value, bool):
        return value
    return str(value).strip().lower() in {"true", "1"}


def maybe_json(value: Any) -> Any:
    """``data`` (and ``parameters``) may be an object or a JSON string holding one."""
    if isinstance(value, str):
        text = value.strip()
        if text.startswith(("{", "[")):
            return json.loads(text)
    return value


def parse_decimal(value: Any) -> Decimal | None:
    """Numbers may be JSON numbers or numeric strings ("1.000"); booleans are not numbers."""
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, float):
        value = repr(value)
    try:
        result = Decimal(str(value).strip())
    except (InvalidOperation, ValueError):
        return None
    return result if result.is_finite() else None


_DATE_FORMATS = ("%Y-%m-%d", "%Y-%m-%d %H:%M:%S", "%Y-%m-%dT%H:%M:%S", "%Y/%m/%d", "%Y/%m/%d %H:%M:%S")


def parse_date(value: Any) -> date | None:
    """Business dates: "2024-01-15", "2024-01-15 10:00:00", ISO with fractions or offset."""
    if not isinstance(value, str) or not value.strip():
        return None
    text = value.strip()
    for fmt in _DATE_FORMATS:
        try:
            return datetime.strptime(text, fmt).date()
        except ValueError:
            continue
    try:
        return datetime.fromisoformat(text).date()
    except ValueError:
        return None


def render_date(value: date) -> str:
    """K3Cloud renders dates as local datetimes without offset: 2024-01-15T00:00:00."""
    return f"{value.isoformat()}T00:00:00"


def render_datetime(value: datetime) -> str:
    """Server-local wall time with milliseconds and no offset, e.g. 2024-01-15T10:20:30.123."""
    local = value.astimezone(CHINA_TZ)
    return local.strftime("%Y-%m-%dT%H:%M:%S.") + f"{local.microsecond // 1000:03d}"


def render_value(value: Any) -> Any:
    """JSON-ready value: Decimal -> number, dates -> K3Cloud's local datetime strings."""
    if isinstance(value, Decimal):
        return float(value)  # K3Cloud answers quantities and amounts as JSON numbers (2.0, 113.0)
    if isinstance(value, datetime):
        return render_datetime(value)
    if isinstance(value, date):
        return render_date(value)
    return value


def json_response(payload: Any, status_code: int = 200, headers: dict[str, str] | None = None) -> Response:
    """K3Cloud answers JSON text in UTF-8 without escaping Chinese."""
    body = json.dumps(payload, ensure_ascii=False, separators=(",", ":"))
    return Response(body, status_code=status_code, media_type="application/json; charset=utf-8", headers=headers)


# --- ExecuteBillQuery field registry --------------------------------------------------------------

Getter = Callable[[Any, Any], Any]


@dataclass(frozen=True)
class QueryField:
    """A queryable field key: whether it lives on the entry (one row per line) and its value."""

    getter: Getter
    entry: bool = False


def _ref_fields(prefix: str, pick: Callable[[Any], MasterRecord | None]) -> dict[str, QueryField]:
    """``FCustId`` (internal id), ``FCustId.FNumber`` and ``FCustId.FName`` for one base-data field."""

    def part(attr: str) -> Getter:
        return lambda bill, _line: getattr(pick(bill), attr) if pick(bill) is not None else None

    return {
        prefix: QueryField(part("id")),
        f"{prefix}.fnumber": QueryField(part("number")),
        f"{prefix}.fname": QueryField(part("name")),
    }


def _line_ref_fields(prefix: str) -> dict[str, QueryField]:
    """Entry base-data field (material) in its three forms."""

    def part(attr: str) -> Getter:
        return lambda _bill, line: getattr(line.material, attr)

    return {
        prefix: QueryField(part("id"), True),
        f"{prefix}.fnumber": QueryField(part("number"), True),
        f"{prefix}.fname": QueryField(part("name"), True),
    }


def _line(attr: str) -> QueryField:
    return QueryField(lambda _bill, line: getattr(line, attr), True)


SALE_ORDER_FIELDS: dict[str, QueryField] = {
    "fid": QueryField(lambda b, _l: b.id),
    "fbillno": QueryField(lambda b, _l: b.number),
    "fdate": QueryField(lambda b, _l: b.bill_date),
    "fdocumentstatus": QueryField(lambda b, _l: b.status),
    "fcancelstatus": QueryField(lambda b, _l: b.cancel_status),
    "fclosestatus": QueryField(lambda b, _l: b.close_status),
    "fnote": QueryField(lambda b, _l: b.note),
    "fsalerid.fnumber": QueryField(lambda b, _l: b.saler),
    "fbillallamount": QueryField(lambda b, _l: b.all_amount),
    "fbillamount": QueryField(lambda b, _l: b.amount),
    "fcreatedate": QueryField(lambda b, _l: b.created_at),
    "fmodifydate": QueryField(lambda b, _l: b.modified_at),
    **_ref_fields("fbilltypeid", lambda b: b.bill_type),
    **_ref_fields("fsaleorgid", lambda b: b.sale_org),
    **_ref_fields("fcustid", lambda b: b.customer),
    **_ref_fields("fsettlecurrid", lambda b: b.currency),
    "fsaleorderentry_fentryid": _line("entry_id"),
    "fentryid": _line("entry_id"),
    "fseq": _line("seq"),
    **_line_ref_fields("fmaterialid"),
    "fqty": _line("qty"),
    "fprice": _line("price"),
    "ftaxprice": _line("tax_price"),
    "fentrytaxrate": _line("tax_rate"),
    "famount": _line("amount"),
    "fallamount": _line("all_amount"),
    "fdeliverydate": _line("delivery_date"),
    "fentrynote": _line("note"),
    "fisfree": _line("is_free"),
}


def _master_fields(id_key: str) -> dict[str, QueryField]:
    """BD_MATERIAL / BD_Customer: enough for a connector to resolve or check master data."""
    return {
        id_key: QueryField(lambda r, _l: r.id),
        "fnumber": QueryField(lambda r, _l: r.number),
        "fname": QueryField(lambda r, _l: r.name),
        "fdocumentstatus": QueryField(lambda _r, _l: "C"),
        "fforbidstatus": QueryField(lambda _r, _l: "A"),
    }


MASTER_FIELDS = {MATERIAL_FORM.lower(): _master_fields("fmaterialid"), CUSTOMER_FORM.lower(): _master_fields("fcustid")}


# --- FilterString: a tiny SQL-like WHERE parser ----------------------------------------------------

_TOKEN = re.compile(
    r"\s*(?:(?P<str>N?'(?:[^']|'')*')|(?P<num>-?\d+(?:\.\d+)?)|(?P<op><>|!=|>=|<=|=|<|>)"
    r"|(?P<lp>\()|(?P<rp>\))|(?P<comma>,)|(?P<word>[A-Za-z_][A-Za-z0-9_.]*))"
)
Predicate = Callable[[Callable[[str], Any]], bool]


class FilterSyntaxError(ValueError):
    pass


class UnknownFieldError(KeyError):
    def __init__(self, field_key: str) -> None:
        super().__init__(field_key)
        self.field_key = field_key


def tokenize(text: str) -> list[tuple[str, str]]:
    tokens: list[tuple[str, str]] = []
    pos = 0
    while pos < len(text):
        if text[pos:].strip() == "":
            break
        match = _TOKEN.match(text, pos)
        if match is None or match.end() == pos:
            raise FilterSyntaxError(text[pos:])
        kind = match.lastgroup or ""
        value = match.group(kind)
        if kind == "str":
            value = value[value.index("'") + 1 : -1].replace("''", "'")
        tokens.append((kind, value))
        pos = match.end()
    return tokens


def _coerce_like(sample: Any, literal: Any) -> Any:
    """Compare a literal in the field's own type (number, date or text)."""
    if isinstance(sample, bool):
        return as_bool(literal)
    if isinstance(sample, int | Decimal):
        return parse_decimal(literal)
    if isinstance(sample, datetime):
        parsed = parse_date(str(literal))
        return datetime.combine(parsed, datetime.min.time(), CHINA_TZ) if parsed else None
    if isinstance(sample, date):
        return parse_date(str(literal))
    return str(literal)


def _compare(op: str, actual: Any, literal: Any) -> bool:
    if actual is None:
        return op in {"<>", "!="} and literal not in (None, "")
    expected = _coerce_like(actual, literal)
    if expected is None:
        return False
    if isinstance(actual, int) and not isinstance(actual, bool):
        actual = Decimal(actual)
    if isinstance(actual, str):
        actual, expected = actual.lower(), str(expected).lower()  # SQL Server default collation is case-insensitive
    ops: dict[str, Callable[[Any, Any], bool]] = {
        "=": lambda a, e: a == e,
        "<>": lambda a, e: a != e,
        "!=": lambda a, e: a != e,
        ">": lambda a, e: a > e,
        ">=": lambda a, e: a >= e,
        "<": lambda a, e: a < e,
        "<=": lambda a, e: a <= e,
    }
    return ops[op](actual, expected)


def _like(actual: Any, pattern: str) -> bool:
    if actual is None:
        return False
    regex = "".join(".*" if ch == "%" else "." if ch == "_" else re.escape(ch) for ch in pattern)
    return re.fullmatch(regex, str(actual), re.IGNORECASE | re.DOTALL) is not None


class FilterParser:
    """``cond {AND|OR cond}`` with parentheses; cond is ``F op lit``, ``F [NOT] IN (...)``, ``F LIKE lit``."""

    def __init__(self, text: str, known: Callable[[str], bool]) -> None:
        self.tokens = tokenize(text)
        self.pos = 0
        self.known = known
        self.fields: set[str] = set()

    def parse(self) -> Predicate:
        if not self.tokens:
            return lambda _get: True
        predicate = self._expr()
        if self.pos != len(self.tokens):
            raise FilterSyntaxError(self.tokens[self.pos][1])
        return predicate

    def _peek(self) -> tuple[str, str]:
        return self.tokens[self.pos] if self.pos < len(self.tokens) else ("eof", "")

    def _take(self, kind: str, word: str | None = None) -> str:
        tok_kind, value = self._peek()
        if tok_kind != kind or (word is not None and value.lower() != word):
            raise FilterSyntaxError(value or "end of filter")
        self.pos += 1
        return value

    def _is_word(self, word: str) -> bool:
        kind, value = self._peek()
        return kind == "word" and value.lower() == word

    def _expr(self) -> Predicate:
        left = self._term()
        while self._is_word("or"):
            self.pos += 1
            right = self._term()
            left = (lambda a, b: lambda get: a(get) or b(get))(left, right)
        return left

    def _term(self) -> Predicate:
        left = self._factor()
        while self._is_word("and"):
            self.pos += 1
            right = self._factor()
            left = (lambda a, b: lambda get: a(get) and b(get))(left, right)
        return left

    def _factor(self) -> Predicate:
        if self._peek()[0] == "lp":
            self.pos += 1
            inner = self._expr()
            self._take("rp")
            return inner
        return self._condition()

    def _literal(self) -> Any:
        kind, value = self._peek()
        if kind not in {"str", "num"}:
            raise FilterSyntaxError(value or "end of filter")
        self.pos += 1
        return value

    def _condition(self) -> Predicate:
        field_key = self._take("word").lower()
        if not self.known(field_key):
            raise UnknownFieldError(field_key)
        self.fields.add(field_key)
        negate = False
        if self._is_word("not"):
            self.pos += 1
            negate = True
        if self._is_word("in"):
            self.pos += 1
            values = self._in_list()
            return lambda get: negate != any(_compare("=", get(field_key), v) for v in values)
        if self._is_word("like"):
            self.pos += 1
            pattern = str(self._literal())
            return lambda get: negate != _like(get(field_key), pattern)
        if negate:
            raise FilterSyntaxError("not")
        op = self._take("op")
        literal = self._literal()
        return lambda get: _compare(op, get(field_key), literal)

    def _in_list(self) -> list[Any]:
        self._take("lp")
        values = [self._literal()]
        while self._peek()[0] == "comma":
            self.pos += 1
            values.append(self._literal())
        self._take("rp")
        return values


# --- the simulator --------------------------------------------------------------------------------


def _as_masters(items: Iterable[str] | Mapping[str, str], first_id: int, label: str) -> dict[str, MasterRecord]:
    """Numbers (or number -> name) to records with stable internal ids, keyed case-insensitively."""
    pairs = items.items() if isinstance(items, Mapping) else ((n, f"{label} {n}") for n in items)
    return {number.lower(): MasterRecord(first_id + i, number, name) for i, (number, name) in enumerate(pairs)}


class KingdeeSimulator:
    """K3Cloud WebAPI simulator (login, Save, View, ExecuteBillQuery and the status operations
    Submit, Audit, UnAudit, CancelAssign, Delete, ExcuteOperation for SAL_SaleOrder; with
    ``simulators/kingdee_finance.py``: Push to SAL_OUTSTOCK, and GL_VOUCHER).

    ``.app`` is the ASGI app; run it with ``BackgroundServer`` or test it with
    ``httpx.ASGITransport``. All state is in memory and guarded by a lock, because ``state()`` is
    read from test threads while uvicorn serves requests on its own thread.
    """

    def __init__(
        self,
        acct_id: str,
        username: str,
        password: str,
        app_id: str | None = None,
        app_secret: str | None = None,
        *,
        materials: Iterable[str] | Mapping[str, str],
        customers: Iterable[str] | Mapping[str, str],
        orgs: Iterable[str] | Mapping[str, str] = ("100",),
        seed: int = 7,
        session_ttl_s: float = 1200.0,
        session_max_calls: int | None = None,
        unique_bill_no: bool = True,
        faults: FaultConfig | None = None,
        throttle_style: Literal["msgcode", "http429"] = "msgcode",
        clock: Callable[[], float] = time.monotonic,
        accounts: Iterable[str] | Mapping[str, str] | None = None,
        account_books: Iterable[str] | Mapping[str, str] | None = None,
    ) -> None:
        # imported here, not at module level: kingdee_finance builds on this module
        from simulators.kingdee_finance import FinanceForms

        self.acct_id = acct_id
        self.username = username
        self.password = password
        self.app_id = app_id
        self.app_secret = app_secret
        self.session_ttl_s = session_ttl_s
        self.session_max_calls = session_max_calls
        self.unique_bill_no = unique_bill_no
        self.throttle_style = throttle_style
        self._clock = clock
        self._rng = random.Random(seed)
        self._lock = threading.RLock()
        self.faults = FaultInjector(faults or FaultConfig(seed=seed))
        self.materials = _as_masters(materials, 200001, "物料")
        self.customers = _as_masters(customers, 300001, "客户")
        self.orgs = _as_masters(orgs, 1, "组织")
        self.currencies = {
            n.lower(): MasterRecord(i + 1, n, name) for i, (n, (_iso, name)) in enumerate(CURRENCIES.items())
        }
        self.bill_types = {n.lower(): MasterRecord(f"bt-{n.lower()}", n, name) for n, name in BILL_TYPES.items()}
        self.sessions: dict[str, Session] = {}
        self.orders: list[SaleOrder] = []
        self.deleted: list[SaleOrder] = []
        self.counters = Counters()
        self._next_id = 100001
        self._next_entry_id = 100001
        self._next_auto_number = 1
        #: SAL_OUTSTOCK and GL_VOUCHER (``accounts``: chart of accounts number -> name, default
        #: ``kingdee_finance.DEFAULT_ACCOUNTS``; ``account_books``: account book numbers, default 001)
        self.finance: FinanceForms = FinanceForms(self, accounts, account_books)
        self.app = self._build_app()

    # --- public helpers ---------------------------------------------------------------------------

    def state(self) -> dict[str, Any]:
        """Counters and stored bills, for assertions (``GET /_sim/state`` answers the same)."""
        with self._lock:
            by_number: dict[str, list[SaleOrder]] = {}
            for order in self.orders:
                by_number.setdefault(order.number, []).append(order)
            return {
                "sales_orders": len(self.orders),
                "bills": {number: self._bill_summary(orders) for number, orders in by_number.items()},
                "duplicates": sum(len(orders) - 1 for orders in by_number.values()),
                "active_sessions": len(self.sessions),
                "live_sales_orders": self._live_count(),
                "deleted_numbers": [o.number for o in self.deleted],
                "cancelled_numbers": [o.number for o in self.orders if o.cancel_status == "B"],
                "closed_numbers": [o.number for o in self.orders if o.close_status == "B"],
                "sales_outbounds": len(self.finance.outstocks),
                "vouchers": len(self.finance.vouchers),
                **vars(self.counters),
                "faults_injected": dict(self.faults.injected),
            }

    def set_faults(self, config: FaultConfig) -> None:
        """Swap the fault configuration (re-seeds the injector so runs stay replayable)."""
        with self._lock:
            self.faults.reconfigure(config)

    # --- accessors and set-up helpers for tests and the demo ---------------------------------------

    def _order(self, number: str) -> SaleOrder | None:
        wanted = number.lower()
        return next((o for o in self.orders if o.number.lower() == wanted), None)

    def bill_status(self, number: str) -> str | None:
        """FDocumentStatus (Z/A/B/C/D) of the bill, or None when there is none (never, or deleted)."""
        with self._lock:
            order = self._order(number)
            return order.status if order else None

    def bill_state(self, number: str) -> dict[str, str] | None:
        """``{"FDocumentStatus", "FCancelStatus", "FCloseStatus"}`` of the bill, None when absent."""
        with self._lock:
            order = self._order(number)
            if order is None:
                return None
            return {"FDocumentStatus": order.status, "FCancelStatus": order.cancel_status,
                    "FCloseStatus": order.close_status}

    def deleted_numbers(self) -> list[str]:
        """Bill numbers removed by Delete, in the order they were deleted."""
        with self._lock:
            return [o.number for o in self.deleted]

    def cancelled_numbers(self) -> list[str]:
        """Bill numbers voided (作废, FCancelStatus B) and still stored."""
        with self._lock:
            return [o.number for o in self.orders if o.cancel_status == "B"]

    def closed_numbers(self) -> list[str]:
        """Bill numbers closed as a whole (整单关闭, FCloseStatus B)."""
        with self._lock:
            return [o.number for o in self.orders if o.close_status == "B"]

    def live_sales_orders(self) -> int:
        """Stored sales orders that are neither voided nor closed (deleted ones are gone)."""
        with self._lock:
            return self._live_count()

    def _live_count(self) -> int:
        return sum(1 for o in self.orders if o.cancel_status != "B" and o.close_status != "B")

    def set_bill_status(self, number: str, status: str) -> None:
        """Put a bill in a document status directly (as if people submitted/audited it in the UI)."""
        if status not in {STATUS_DRAFT, STATUS_CREATED, STATUS_AUDITING, STATUS_AUDITED, STATUS_REAUDIT}:
            raise ValueError(f"unknown FDocumentStatus {status!r}")
        with self._lock:
            order = self._order(number)
            if order is None:
                raise KeyError(number)
            order.status = status
            order.was_audited = order.was_audited or status in {STATUS_AUDITED, STATUS_REAUDIT}

    def add_downstream(self, number: str, downstream_number: str = "") -> None:
        """Record a bill pushed from this one (e.g. a 发货通知单): UnAudit and Delete are then refused."""
        with self._lock:
            order = self._order(number)
            if order is None:
                raise KeyError(number)
            order.downstream = [*(order.downstream or []), downstream_number or f"FHTZD{order.id}"]

    # --- sales outbound and vouchers (simulators/kingdee_finance.py) --------------------------------

    def outbounds(self) -> dict[str, dict[str, Any]]:
        """SAL_OUTSTOCK bills by FBillNo: ``Id``, ``FDocumentStatus``, ``FCancelStatus``, ``FDate``,
        ``FNote``, ``FSrcBillNo`` (the sales order) and ``lines`` (``FMaterialId``, ``FRealQty``,
        ``FMustQty`` as Decimal, ``FEntryID``)."""
        with self._lock:
            return self.finance.outbounds_summary()

    def deleted_outbounds(self) -> list[str]:
        """SAL_OUTSTOCK numbers removed by Delete, in order."""
        with self._lock:
            return [o.number for o in self.finance.deleted_outstocks]

    def vouchers(self) -> dict[str, dict[str, Any]]:
        """GL_VOUCHER bills by FBillNo: ``Id``, ``FAccountBookID``, ``FDate``, ``FVOUCHERGROUPID``,
        ``FVOUCHERGROUPNO``, ``FDocumentStatus``, ``explanation`` (first entry's 摘要), ``debit`` and
        ``credit`` totals, and ``entries`` (``FACCOUNTID``, ``FEXPLANATION``, ``FDEBIT``, ``FCREDIT``)."""
        with self._lock:
            return self.finance.vouchers_summary()

    def voucher_totals(self, *, audited_only: bool = False) -> dict[str, dict[str, Decimal]]:
        """Per account number: ``debit``, ``credit`` and ``net`` (debit - credit) over the stored
        vouchers (only audited ones with ``audited_only``)."""
        with self._lock:
            return self.finance.totals(audited_only)

    def new_bill_id(self) -> int:
        """Next internal id (FID / FVOUCHERID); ids are shared by all forms, as inner codes are unique."""
        bill_id = self._next_id
        self._next_id += 1
        return bill_id

    def new_entry_id(self) -> int:
        entry_id = self._next_entry_id
        self._next_entry_id += 1
        return entry_id

    def expire_sessions(self) -> int:
        """Drop every session, as an IIS recycle would; returns how many were dropped."""
        with self._lock:
            dropped = len(self.sessions)
            self.sessions.clear()
            return dropped

    @staticmethod
    def _bill_summary(orders: list[SaleOrder]) -> dict[str, Any]:
        first = orders[0]
        return {
            "Id": first.id,
            "Ids": [o.id for o in orders],
            "count": len(orders),
            "FDate": first.bill_date.isoformat(),
            "FCustId": first.customer.number,
            "FSaleOrgId": first.sale_org.number,
            "FSettleCurrId": first.currency.number,
            "FNote": first.note,
            "FDocumentStatus": first.status,
            "FBillAllAmount": str(first.all_amount),
            "lines": [
                {
                    "FMaterialId": ln.material.number,
                    "FQty": str(ln.qty),
                    "FTaxPrice": str(ln.tax_price),
                    "FEntryTaxRate": str(ln.tax_rate),
                    "FAllAmount": str(ln.all_amount),
                    "FEntryNote": ln.note,
                }
                for ln in first.lines
            ],
        }

    # --- ASGI app ---------------------------------------------------------------------------------

    def _build_app(self) -> FastAPI:
        app = FastAPI(title="Kingdee K3Cloud WebAPI simulator", docs_url=None, redoc_url=None, openapi_url=None)

        @app.get("/_sim/state")
        async def sim_state() -> Response:
            return json_response(self.state())

        @app.post("/_sim/faults")
        async def sim_faults(config: FaultConfig) -> Response:
            self.set_faults(config)
            return json_response(config.model_dump())

        @app.post("/_sim/expire_sessions")
        async def sim_expire() -> Response:
            return json_response({"expired": self.expire_sessions()})

        @app.post("/{base}/{service}")
        async def webapi(base: str, service: str, request: Request) -> Response:
            return await self._dispatch(base, service, request)

        return app

    async def _dispatch(self, base: str, service: str, request: Request) -> Response:
        name = service.lower()
        if base.lower() != BASE_PATH or not name.endswith(SERVICE_SUFFIX) or not name.startswith(SERVICE_PREFIX):
            return Response("The resource cannot be found.", status_code=404, media_type="text/plain")
        name = name[len(SERVICE_PREFIX) : -len(SERVICE_SUFFIX)]
        try:
            body = json.loads(await request.body() or b"null")
        except (ValueError, UnicodeDecodeError):
            body = None
        if name in {SVC_VALIDATE_USER, SVC_LOGIN_BY_APP_SECRET, SVC_LOGOUT}:
            return self._auth(name, body, request)
        handlers: dict[str, Callable[[Any], Response]] = {
            SVC_SAVE: self._save,
            SVC_VIEW: self._view,
            SVC_QUERY: self._query,
            SVC_PUSH: self._push,
            SVC_SUBMIT: lambda b: self._status_operation(SVC_SUBMIT, b),
            SVC_AUDIT: lambda b: self._status_operation(SVC_AUDIT, b),
            SVC_UNAUDIT: lambda b: self._status_operation(SVC_UNAUDIT, b),
            SVC_DELETE: lambda b: self._status_operation(SVC_DELETE, b),
            SVC_CANCEL_ASSIGN: lambda b: self._status_operation(SVC_CANCEL_ASSIGN, b),
            SVC_EXCUTE_OPERATION: lambda b: self._status_operation(SVC_EXCUTE_OPERATION, b),
            SVC_EXECUTE_OPERATION: lambda b: self._status_operation(SVC_EXCUTE_OPERATION, b),
        }
        handler = handlers.get(name)
        if handler is None:
            return Response("The resource cannot be found.", status_code=404, media_type="text/plain")
        fault = await self.faults.before_request()
        if fault is not None:
            return self._fault_response(fault, name)
        if self._session_for(request) is None:
            with self._lock:
                self.counters.session_lost_responses += 1
            return self._failure(name, MsgCode.CONTEXT_LOST, [error_entry(SESSION_LOST_MESSAGE)])
        with self._lock:
            return handler(body)

    def _fault_response(self, fault: str, service: str) -> Response:
        """Transport faults (5xx) and K3Cloud's call-limit answer (MsgCode 14) or an HTTP 429."""
        with self._lock:
            if fault == "error_5xx":
                self.counters.errors_5xx += 1
                return Response("<h1>Service Unavailable</h1>", status_code=503, media_type="text/html")
            self.counters.throttled += 1
        retry_after = str(self.faults.config.retry_after_s)
        if self.throttle_style == "http429":
            return Response(
                "Too Many Requests", status_code=429, media_type="text/plain", headers={"Retry-After": retry_after}
            )
        message = "接口调用次数超出限制，请稍后再试"  # sim text: MsgCode 14 (调用限制) has no documented message
        return self._failure(service, MsgCode.CALL_LIMIT, [error_entry(message)])

    @staticmethod
    def _failure(service: str, msg_code: MsgCode, errors: list[dict[str, Any]]) -> Response:
        """Failure envelope; ExecuteBillQuery wraps it as ``[[{...}]]`` like real servers do."""
        payload: Any = failure_result(msg_code, errors)
        if service == SVC_QUERY:
            payload = [[payload]]
        return json_response(payload)

    # --- sessions and login -----------------------------------------------------------------------

    def _session_for(self, request: Request) -> Session | None:
        """Find the live session named by the cookie (or the header the SDKs also send)."""
        sid = request.cookies.get(SESSION_COOKIE) or request.headers.get(SESSION_COOKIE)
        if not sid:
            return None
        with self._lock:
            session = self.sessions.get(sid)
            if session is None:
                return None
            now = self._clock()
            if now - session.last_seen > self.session_ttl_s:
                del self.sessions[sid]
                return None
            if self.session_max_calls is not None and session.calls >= self.session_max_calls:
                del self.sessions[sid]  # used up: this call and every later one see "session lost"
                return None
            session.calls += 1
            session.last_seen = now  # idle timeout: each call keeps the session alive
            return session

    def _new_id(self) -> str:
        return f"{self._rng.getrandbits(128):032x}"

    def _auth(self, service: str, body: Any, request: Request) -> Response:
        if service == SVC_LOGOUT:
            sid = request.cookies.get(SESSION_COOKIE) or request.headers.get(SESSION_COOKIE)
            with self._lock:
                self.sessions.pop(sid or "", None)
            return json_response(True)
        keys = ["acctid", "username", "password", "lcid"]
        if service == SVC_LOGIN_BY_APP_SECRET:
            keys = ["acctid", "username", "appid", "appsecret", "lcid"]
        args = self._login_args(body, keys)
        with self._lock:
            failure = self._check_credentials(service, args)
            if failure is not None:
                self.counters.login_failures += 1
                return json_response(self._login_failure(failure))
            return self._login_success(args)

    @staticmethod
    def _login_args(body: Any, keys: list[str]) -> dict[str, Any]:
        """Named form ``{"acctID": ...}`` or positional ``{"parameters": [...]}`` / a bare list."""
        if isinstance(body, dict) and ci_has(body, "parameters"):
            body = maybe_json(ci_get(body, "parameters"))
        if isinstance(body, list):
            return dict(zip(keys, body, strict=False))
        if isinstance(body, dict):
            return {k: ci_get(body, k) for k in keys}
        return {}

    def _check_credentials(self, service: str, args: dict[str, Any]) -> str | None:
        """None when the credentials are right, else the LoginResult message."""
        if str(args.get("acctid") or "") != self.acct_id:
            return f"数据中心不存在：{args.get('acctid')}"  # sim text
        if str(args.get("username") or "") != self.username:
            return "用户名或密码错误！"  # sim text
        if service == SVC_VALIDATE_USER:
            return None if str(args.get("password") or "") == self.password else "用户名或密码错误！"
        if self.app_id is None or self.app_secret is None:
            return "未配置第三方系统登录授权"  # sim text
        if str(args.get("appid") or "") != self.app_id or str(args.get("appsecret") or "") != self.app_secret:
            return "第三方系统登录授权验证失败"  # sim text
        return None

    @staticmethod
    def _login_failure(message: str) -> dict[str, Any]:
        """Documented LoginResult template: LoginResultType 0 and a null Context."""
        return {
            "Message": message,
            "MessageCode": "",
            "LoginResultType": 0,
            "Context": None,
            "KDSVCSessionId": None,
            "FormId": None,
            "RedirectFormParam": None,
            "FormInputObject": None,
            "ErrorStackTrace": None,
            "Lcid": 0,
            "AccessToken": None,
            "CustomParam": {},
            "KdAccessResult": None,
            "IsSuccessByAPI": False,
        }

    def _login_success(self, args: dict[str, Any]) -> Response:
        lcid = int(parse_decimal(args.get("lcid")) or LCID_ZH_CN)
        session = Session(
            self._new_id(), self._new_id()[:24], self._new_id(), self.acct_id, self.username, self._clock()
        )
        self.sessions[session.sid] = session
        self.counters.logins += 1
        org = next(iter(self.orgs.values()))
        payload = {
            "Message": None,
            "MessageCode": "CheckPasswordPolicy",
            "LoginResultType": 1,
            "Context": {
                "UserLocale": "zh-CN",
                "LogLocale": "zh-CN",
                "DBid": self.acct_id,
                "DatabaseType": 3,
                "SessionId": session.aspnet_id,
                "UseLanguages": [
                    {"LocaleId": LCID_ZH_CN, "LocaleName": "中文(简体/中国)", "Alias": "CN", "LicenseType": 0}
                ],
                "UserId": 100008,
                "UserName": self.username,
                "CustomName": "Tongdao K3Cloud simulator",
                "DisplayVersion": "8.2.0",
                "DataCenterName": f"sim-{self.acct_id}",
                "UserToken": session.user_token,
                "CurrentOrganizationInfo": {
                    "ID": org.id,
                    "AcctOrgType": "1",
                    "Name": org.name,
                    "FunctionIds": [101, 102, 103, 104],
                },
                "IsCH_ZH_AutoTrans": False,
                "ClientType": 32,
                "GDCID": "",
                "Gsid": None,
                "TRLevel": 0,
                "ProductEdition": 0,
                "DataCenterNumber": None,
                "ContextResultType": 0,
            },
            "KDSVCSessionId": session.sid,
            "FormId": None,
            "RedirectFormParam": None,
            "FormInputObject": None,
            "ErrorStackTrace": None,
            "Lcid": lcid,
            "AccessToken": None,
            "CustomParam": {},
            "KdAccessResult": None,
            "IsSuccessByAPI": True,
        }
        response = json_response(payload)
        response.set_cookie(SESSION_COOKIE, session.sid, path="/", samesite=None)
        response.set_cookie(ASPNET_COOKIE, session.aspnet_id, path="/", httponly=True, samesite=None)
        return response

    # --- argument extraction for the business services --------------------------------------------

    @staticmethod
    def _form_and_data(body: Any) -> tuple[Any, Any]:
        """``{"formid", "data"}`` (SDK) or ``{"parameters": [formid, data]}`` (older clients)."""
        if isinstance(body, dict) and ci_has(body, "parameters"):
            params = maybe_json(ci_get(body, "parameters"))
            if isinstance(params, list) and len(params) >= 2:
                return params[0], maybe_json(params[1])
            raise BusinessError(MsgCode.PARAMETER, [error_entry("parameters 参数格式不正确")])  # sim text
        if isinstance(body, dict):
            return ci_get(body, "formid"), maybe_json(ci_get(body, "data"))
        raise BusinessError(MsgCode.PARAMETER, [error_entry("请求数据包不是合法的 JSON 对象")])  # sim text

    @staticmethod
    def _query_data(body: Any) -> Any:
        if isinstance(body, dict) and ci_has(body, "parameters"):
            params = maybe_json(ci_get(body, "parameters"))
            return maybe_json(params[0]) if isinstance(params, list) and params else None
        if isinstance(body, dict):
            return maybe_json(ci_get(body, "data"))
        return None

    @staticmethod
    def _require_form(form_id: Any, allowed: Iterable[str]) -> str:
        """An unknown FormId is MsgCode 4 with the message real servers give."""
        form = str(form_id or "")
        if form.lower() not in {a.lower() for a in allowed}:
            raise BusinessError(MsgCode.EXCEPTION, [error_entry(f"标识为“{form}”的业务对象不存在，或者被删除。")])
        return form.lower()

    # --- Save ---------------------------------------------------------------------------------------

    def _save(self, body: Any) -> Response:
        self.counters.save_calls += 1
        try:
            form_id, data = self._form_and_data(body)
            form = self._require_form(form_id, [SALE_ORDER_FORM, *FINANCE_FORMS])
            if form != SALE_ORDER_FORM.lower():
                bill = self.finance.save(form, data)
            elif not isinstance(data, dict) or not isinstance(ci_get(data, "Model"), dict):
                raise BusinessError(MsgCode.PARAMETER, [error_entry("data数据包中的参数Model的值不能为空。")])
            else:
                bill = self._commit(data)
        except BusinessError as exc:
            if exc.msg_code == MsgCode.VALIDATION:
                self.counters.validation_failures += 1
            return self._failure(SVC_SAVE, exc.msg_code, exc.errors)
        except (ValueError, TypeError):
            return self._failure(SVC_SAVE, MsgCode.PARAMETER, [error_entry("data 参数不是合法的 JSON")])
        if self.faults.duplicate():
            # The bill is committed but the answer is lost on the way back: the case that makes a
            # client's idempotency (look up by FBillNo before re-saving) matter.
            self.counters.lost_responses += 1
            return Response("<h1>502 Bad Gateway</h1>", status_code=502, media_type="text/html")
        return json_response(self._save_success(bill, data))

    def _commit(self, data: dict[str, Any]) -> SaleOrder:
        """Validate the Model, then insert (FID empty/0) or update (FID of an existing bill).

        Ids are allocated only after every check passed, so a rejected Save consumes none.
        """
        model = ci_get(data, "Model")
        verify = as_bool(ci_get(data, "IsVerifyBaseDataField"), False)
        existing = self._existing_for_update(model)
        draft = SaleOrderBuilder(self, model, verify).validate()
        number = draft.pop("number") or (existing.number if existing else "")
        if number:
            self._check_bill_no(number, existing)
        else:
            number = self.auto_number()
        order = self._assemble(number, draft, existing)
        if as_bool(ci_get(data, "IsAutoSubmitAndAudit"), False):
            order.status, order.was_audited = STATUS_AUDITED, True
        if existing is None:
            self.orders.append(order)
        else:
            self.orders[self.orders.index(existing)] = order
        return order

    def _assemble(self, number: str, draft: dict[str, Any], existing: SaleOrder | None) -> SaleOrder:
        lines = draft.pop("lines")
        if existing is None:
            bill_id, created = self._next_id, datetime.now(CHINA_TZ)
            self._next_id += 1
        else:
            bill_id, created = existing.id, existing.created_at
        built = []
        for seq, line in enumerate(lines, start=1):
            built.append(SaleOrderLine(self._next_entry_id, seq, **line))
            self._next_entry_id += 1
        return SaleOrder(
            id=bill_id,
            number=number,
            lines=built,
            status="A",
            created_at=created,
            modified_at=datetime.now(CHINA_TZ),
            **draft,
        )

    def _existing_for_update(self, model: dict[str, Any]) -> SaleOrder | None:
        fid = parse_decimal(ci_get(model, "FID"))
        if fid is None or fid == 0:
            return None
        for order in self.orders:
            if order.id == int(fid):
                return order
        raise BusinessError(MsgCode.DATA_NOT_FOUND, [error_entry(f"内码为{fid}的单据不存在或已被删除", "FID")])

    def _check_bill_no(self, number: str, existing: SaleOrder | None) -> None:
        """Coding-rule uniqueness, with the error text captured from a real server."""
        clash = any(o.number.lower() == number.lower() and o is not existing for o in self.orders)
        if clash and self.unique_bill_no:
            self.counters.duplicate_bill_no_rejected += 1
            message = f"违反字段唯一性要求：编码唯一。[{number}]在当前系统中已经被使用。"
            raise BusinessError(MsgCode.VALIDATION, [error_entry(message, "FBillNo")])

    def auto_number(self) -> str:
        """Next free XSDD number from the (simulated) coding rule."""
        taken = {o.number.lower() for o in self.orders}
        while True:
            number = f"XSDD{self._next_auto_number:06d}"
            self._next_auto_number += 1
            if number.lower() not in taken:
                return number

    def _save_success(self, order: Any, data: dict[str, Any]) -> dict[str, Any]:
        entity = {"Id": order.id, "Number": order.number, "DIndex": 0}
        returned = self._need_return_data(order, ci_get(data, "NeedReturnFields") or []) \
            if isinstance(order, SaleOrder) else {}
        return {
            "Result": {
                "ResponseStatus": response_status(success=True, success_entities=[entity]),
                "Id": order.id,
                "Number": order.number,
                "NeedReturnData": [returned],
            }
        }

    @staticmethod
    def _need_return_data(order: SaleOrder, fields: list[Any]) -> dict[str, Any]:
        """Header keys give a value; ``FSaleOrderEntry.FKey`` gives one value per line."""
        result: dict[str, Any] = {}
        for raw in fields:
            key = str(raw)
            entity, _, sub = key.partition(".")
            spec = SALE_ORDER_FIELDS.get(sub.lower()) if entity.lower() == "fsaleorderentry" else None
            if spec is not None and spec.entry:
                result.setdefault(entity, []).extend({sub: render_value(spec.getter(order, ln))} for ln in order.lines)
                continue
            spec = SALE_ORDER_FIELDS.get(key.lower())
            if spec is not None and not spec.entry:
                result[key] = render_value(spec.getter(order, None))
        return result

    # --- View ---------------------------------------------------------------------------------------

    def _view(self, body: Any) -> Response:
        self.counters.view_calls += 1
        try:
            form_id, data = self._form_and_data(body)
            form = self._require_form(form_id, [SALE_ORDER_FORM, *FINANCE_FORMS])
            data = data if isinstance(data, dict) else {}
            if form != SALE_ORDER_FORM.lower():
                rendered = self.finance.view(form, data)
            else:
                rendered = view_bill(self._find_for_view(data))
        except BusinessError as exc:
            return self._failure(SVC_VIEW, exc.msg_code, exc.errors)
        except (ValueError, TypeError):
            return self._failure(SVC_VIEW, MsgCode.PARAMETER, [error_entry("data 参数不是合法的 JSON")])
        return json_response({"Result": {"ResponseStatus": None, "Result": rendered}})

    # --- Push (下推), see simulators/kingdee_finance.py ----------------------------------------------

    def _push(self, body: Any) -> Response:
        self.counters.push_calls += 1
        try:
            form_id, data = self._form_and_data(body)
            answer = self.finance.push(form_id, data)
        except BusinessError as exc:
            return self._failure(SVC_PUSH, exc.msg_code, exc.errors)
        except (ValueError, TypeError):
            return self._failure(SVC_PUSH, MsgCode.PARAMETER, [error_entry("data 参数不是合法的 JSON")])
        return json_response(answer)

    def _find_for_view(self, data: dict[str, Any]) -> SaleOrder:
        """``Id`` (internal id) wins over ``Number`` when both are given; one is required."""
        bill_id = parse_decimal(ci_get(data, "Id"))
        number = str(ci_get(data, "Number") or "").strip()
        if (bill_id is None or bill_id == 0) and not number:
            raise BusinessError(MsgCode.BILL_ID_EMPTY, [error_entry("单据编码或内码不能同时为空")])  # sim text
        for order in self.orders:
            if (bill_id and order.id == int(bill_id)) or (not bill_id and order.number.lower() == number.lower()):
                return order
        # sim text: MsgCode 10 is the documented "未找到对应数据"; the message is the simulator's own
        raise BusinessError(MsgCode.DATA_NOT_FOUND, [error_entry("数据不存在或已被删除！")])

    # --- status operations: Submit, Audit, UnAudit, CancelAssign, Delete, ExcuteOperation ----------

    OPERATIONS = ("cancel", "uncancel", "billclose", "unbillclose")

    def _status_operation(self, service: str, body: Any) -> Response:
        """Apply one operation to every bill named by ``Ids``/``Numbers``; see the module docstring."""
        counter = {SVC_SUBMIT: "submit_calls", SVC_AUDIT: "audit_calls", SVC_UNAUDIT: "unaudit_calls",
                   SVC_DELETE: "delete_calls", SVC_CANCEL_ASSIGN: "cancel_assign_calls",
                   SVC_EXCUTE_OPERATION: "operation_calls"}[service]
        setattr(self.counters, counter, getattr(self.counters, counter) + 1)
        try:
            if service == SVC_EXCUTE_OPERATION:
                form_id, op_number, data = self._operation_args(body)
            else:
                (form_id, data), op_number = self._form_and_data(body), ""
            form = self._require_form(form_id, [SALE_ORDER_FORM, *FINANCE_FORMS])
            bills = None if form == SALE_ORDER_FORM.lower() else self.finance.bills(form)
            targets = self._targets(data if isinstance(data, dict) else {}, bills)
        except BusinessError as exc:
            return self._failure(service, exc.msg_code, exc.errors)
        except (ValueError, TypeError):
            return self._failure(service, MsgCode.PARAMETER, [error_entry("data 参数不是合法的 JSON")])
        successes: list[dict[str, Any]] = []
        errors: list[dict[str, Any]] = []
        codes: list[MsgCode] = []
        for index, (label, order) in enumerate(targets):
            try:
                if order is None:
                    # sim text: MsgCode 10 is the documented "no matching data"
                    raise BusinessError(MsgCode.DATA_NOT_FOUND, [error_entry(f"单据“{label}”不存在或已被删除")])
                self._apply(service, op_number, order)
                successes.append({"Id": order.id, "Number": order.number, "DIndex": index})
            except BusinessError as exc:
                codes.append(exc.msg_code)
                errors.extend({**e, "DIndex": index} for e in exc.errors)
        if errors:
            self.counters.operations_refused += 1
        status = response_status(success=not errors, msg_code=codes[0] if codes else MsgCode.DEFAULT,
                                 errors=errors, success_entities=successes)
        return json_response({"Result": {"ResponseStatus": status}})

    @staticmethod
    def _operation_args(body: Any) -> tuple[Any, str, Any]:
        """``{"formid", "opNumber", "data"}`` (SDK) or ``{"parameters": [formid, opNumber, data]}``."""
        if isinstance(body, dict) and ci_has(body, "parameters"):
            params = maybe_json(ci_get(body, "parameters"))
            if isinstance(params, list) and len(params) >= 3:
                return params[0], str(params[1] or ""), maybe_json(params[2])
            raise BusinessError(MsgCode.PARAMETER, [error_entry("parameters 参数格式不正确")])  # sim text
        if isinstance(body, dict):
            return ci_get(body, "formid"), str(ci_get(body, "opNumber") or ""), maybe_json(ci_get(body, "data"))
        raise BusinessError(MsgCode.PARAMETER, [error_entry("请求数据包不是合法的 JSON 对象")])  # sim text

    def _targets(self, data: dict[str, Any], bills: list[Any] | None = None) -> list[tuple[str, Any]]:
        """Bills named by ``Ids`` ("1,2" or a list; wins when given) or ``Numbers`` (a list), among
        ``bills`` (default: the sales orders)."""
        pool = self.orders if bills is None else bills
        raw_ids = ci_get(data, "Ids")
        ids = [str(i).strip() for i in (raw_ids if isinstance(raw_ids, list) else str(raw_ids or "").split(","))]
        ids = [i for i in ids if i and i != "0"]
        if ids:
            by_id = {str(o.id): o for o in pool}
            return [(i, by_id.get(i)) for i in ids]
        numbers = ci_get(data, "Numbers") or []
        numbers = [numbers] if isinstance(numbers, str) else numbers
        numbers = [str(n).strip() for n in numbers if str(n).strip()]
        if not numbers:
            raise BusinessError(MsgCode.PARAMETER, [error_entry("单据编码或内码不能同时为空")])  # sim text
        if bills is not None:
            return [(n, next((b for b in pool if b.number.lower() == n.lower()), None)) for n in numbers]
        return [(n, self._order(n)) for n in numbers]

    def _downstream(self, bill: Any) -> list[str]:
        """Bills pushed from this one: recorded ones (``add_downstream``) and live sales outbounds."""
        found = list(bill.downstream or [])
        if isinstance(bill, SaleOrder):
            found += [o.number for o in self.finance.outbounds_of(bill)]
        return found

    def _apply(self, service: str, op_number: str, order: Any) -> None:
        """One bill (sales order, sales outbound or voucher) through one operation, by the status
        rules; raises BusinessError when refused."""

        def refuse(message: str) -> BusinessError:
            return BusinessError(MsgCode.VALIDATION, [error_entry(f"单据编号为“{order.number}”的单据，{message}")])

        status, voided, closed = order.status, order.cancel_status == "B", order.close_status == "B"
        if service == SVC_SUBMIT:
            if status not in NOT_AUDITED or voided:
                raise refuse("当前状态不允许提交。")  # sim text
            order.status = STATUS_AUDITING
        elif service == SVC_AUDIT:
            if status != STATUS_AUDITING:
                raise refuse("不是审核中状态，不允许审核。")  # sim text
            order.status, order.was_audited = STATUS_AUDITED, True
        elif service == SVC_UNAUDIT:
            if status != STATUS_AUDITED:
                raise refuse("不是已审核状态，不允许反审核。")  # sim text
            if closed:
                raise refuse("已关闭，不允许反审核。")  # sim text
            if self._downstream(order):
                raise refuse(f"已经存在下游单据（{'、'.join(self._downstream(order))}），不允许反审核。")  # sim text
            order.status = STATUS_REAUDIT
        elif service == SVC_CANCEL_ASSIGN:
            if status != STATUS_AUDITING:
                raise refuse("不是审核中状态，不允许撤销。")  # sim text
            order.status = STATUS_REAUDIT if order.was_audited else STATUS_CREATED
        elif service == SVC_DELETE:
            if status not in NOT_AUDITED:
                raise refuse("是审核中或已审核状态，不允许删除。")  # sim text
            if self._downstream(order):
                raise refuse("已经存在下游单据，不允许删除。")  # sim text
            if isinstance(order, SaleOrder):
                self.orders.remove(order)
                self.deleted.append(order)
            else:
                self.finance.remove(order)
        else:
            self._execute_operation(op_number, order, refuse)
        order.modified_at = datetime.now(CHINA_TZ)

    def _execute_operation(
        self, op_number: str, order: Any, refuse: Callable[[str], BusinessError]
    ) -> None:
        op = op_number.lower()
        if op not in self.OPERATIONS:
            # sim text; an unknown operation code is a server exception on real servers
            raise BusinessError(MsgCode.EXCEPTION, [error_entry(f"业务对象上不存在编码为“{op_number}”的操作")])
        if op == "cancel":
            if order.cancel_status == "B":
                raise refuse("已经作废。")  # sim text
            if order.status not in NOT_AUDITED:
                raise refuse("是审核中或已审核状态，不允许作废。")  # sim text
            order.cancel_status = "B"
        elif op == "uncancel":
            if order.cancel_status != "B":
                raise refuse("没有作废，不需要反作废。")  # sim text
            order.cancel_status = "A"
        elif op == "billclose":
            if order.status != STATUS_AUDITED:
                raise refuse("不是已审核状态，不允许整单关闭。")  # sim text
            if order.close_status == "B":
                raise refuse("已经关闭。")  # sim text
            order.close_status = "B"
        else:
            if order.close_status != "B":
                raise refuse("没有关闭，不需要反关闭。")  # sim text
            order.close_status = "A"

    # --- ExecuteBillQuery ---------------------------------------------------------------------------

    def _query(self, body: Any) -> Response:
        self.counters.query_calls += 1
        try:
            data = self._query_data(body)
            if not isinstance(data, dict):
                raise BusinessError(MsgCode.PARAMETER, [error_entry("data数据包中的参数FormId的值不能为空。")])
            rows = self._run_query(data)
        except BusinessError as exc:
            return self._failure(SVC_QUERY, exc.msg_code, exc.errors)
        except (ValueError, TypeError):
            return self._failure(SVC_QUERY, MsgCode.PARAMETER, [error_entry("data 参数不是合法的 JSON")])
        return json_response(rows)

    def _run_query(self, data: dict[str, Any]) -> list[list[Any]]:
        form = self._require_form(ci_get(data, "FormId"),
                                  [SALE_ORDER_FORM, MATERIAL_FORM, CUSTOMER_FORM, *FINANCE_QUERY_FORMS])
        finance_records = None
        if form in {f.lower() for f in FINANCE_QUERY_FORMS}:
            registry, finance_records = self.finance.query_source(form)
        else:
            registry = SALE_ORDER_FIELDS if form == SALE_ORDER_FORM.lower() else MASTER_FIELDS[form]
        keys = [k.strip() for k in str(ci_get(data, "FieldKeys") or "").split(",") if k.strip()]
        if not keys:
            raise BusinessError(MsgCode.PARAMETER, [error_entry("data数据包中的参数FieldKeys的值不能为空。")])
        for key in keys:
            if key.lower() not in registry:
                raise BusinessError(MsgCode.FIELD_NOT_FOUND, [error_entry(f"元数据中标识为{key}的字段不存在")])
        predicate, filter_fields = self._filter(ci_get(data, "FilterString"), registry)
        order_keys = self._order_keys(str(ci_get(data, "OrderString") or ""), registry)
        used = {k.lower() for k in keys} | filter_fields | {k for k, _ in order_keys}
        per_entry = any(registry[k].entry for k in used)
        records = finance_records(per_entry) if finance_records else self._records(form, per_entry)
        rows = [(rec, ln) for rec, ln in records if predicate(lambda k, r=rec, e=ln: registry[k].getter(r, e))]
        rows = self._sorted(rows, order_keys, registry)
        return self._page([[render_value(registry[k.lower()].getter(rec, ln)) for k in keys] for rec, ln in rows], data)

    @staticmethod
    def _filter(raw: Any, registry: dict[str, QueryField]) -> tuple[Predicate, set[str]]:
        if raw is not None and not isinstance(raw, str):
            # Newer servers also take a JSON list of filter objects; not modelled here.
            raise BusinessError(MsgCode.PARAMETER, [error_entry("FilterString 仅支持字符串形式")])  # sim text
        try:
            parser = FilterParser(raw or "", lambda k: k in registry)
            return parser.parse(), parser.fields
        except UnknownFieldError as exc:
            raise BusinessError(
                MsgCode.FIELD_NOT_FOUND, [error_entry(f"元数据中标识为{exc.field_key}的字段不存在")]
            ) from exc
        except FilterSyntaxError as exc:
            raise BusinessError(MsgCode.EXCEPTION, [error_entry(f"GetRealExpress error: {raw} near {exc}")]) from exc

    @staticmethod
    def _order_keys(text: str, registry: dict[str, QueryField]) -> list[tuple[str, bool]]:
        keys: list[tuple[str, bool]] = []
        for part in (p.strip() for p in text.split(",") if p.strip()):
            name, _, direction = part.partition(" ")
            if name.lower() not in registry:
                raise BusinessError(MsgCode.FIELD_NOT_FOUND, [error_entry(f"元数据中标识为{name}的字段不存在")])
            keys.append((name.lower(), direction.strip().lower() == "desc"))
        return keys

    def _records(self, form: str, per_entry: bool) -> list[tuple[Any, Any]]:
        if form == MATERIAL_FORM.lower():
            return [(m, None) for m in self.materials.values()]
        if form == CUSTOMER_FORM.lower():
            return [(c, None) for c in self.customers.values()]
        if per_entry:
            return [(o, ln) for o in self.orders for ln in o.lines]
        return [(o, None) for o in self.orders]

    @staticmethod
    def _sorted(
        rows: list[tuple[Any, Any]], order_keys: list[tuple[str, bool]], registry: dict[str, QueryField]
    ) -> list[tuple[Any, Any]]:
        """Stable multi-key sort; NULLs first, as SQL Server sorts them."""
        for key, descending in reversed(order_keys):
            getter = registry[key].getter

            def sort_key(row: tuple[Any, Any], g: Getter = getter) -> tuple[bool, Any]:
                value = g(*row)
                return (value is not None, value if value is not None else 0)

            rows = sorted(rows, key=sort_key, reverse=descending)
        return rows

    @staticmethod
    def _page(rows: list[list[Any]], data: dict[str, Any]) -> list[list[Any]]:
        top = int(parse_decimal(ci_get(data, "TopRowCount")) or 0)
        start = max(int(parse_decimal(ci_get(data, "StartRow")) or 0), 0)
        limit = int(parse_decimal(ci_get(data, "Limit")) or 0)
        limit = MAX_QUERY_ROWS if limit <= 0 else min(limit, MAX_QUERY_ROWS)
        if top > 0:
            rows = rows[:top]
        return rows[start : start + limit]


# --- Save model validation -----------------------------------------------------------------------


class SaleOrderBuilder:
    """Validates one SAL_SaleOrder Save Model and builds the bill, collecting every error.

    K3Cloud reports all validation errors of a bill at once, each naming its ``FieldName``; this
    does the same so a connector's mapping mistakes show up together.
    """

    LABELS = {
        "FBillNo": "单据编号",
        "FBillTypeID": "单据类型",
        "FDate": "日期",
        "FSaleOrgId": "销售组织",
        "FCustId": "客户",
        "FSettleCurrId": "结算币别",
        "FMaterialId": "物料编码",
        "FQty": "销售数量",
        "FTaxPrice": "含税单价",
        "FPrice": "单价",
        "FEntryTaxRate": "税率",
        "FDeliveryDate": "要货日期",
        "FSaleOrderEntry": "订单明细",
        "FNote": "备注",
        "FEntryNote": "备注",
        "FSalerId": "销售员",
    }

    def __init__(self, sim: KingdeeSimulator, model: dict[str, Any], verify_base_data: bool) -> None:
        self.sim = sim
        self.model = model
        self.verify = verify_base_data
        self.errors: list[dict[str, Any]] = []

    def validate(self) -> dict[str, Any]:
        """The bill's header values plus ``lines``; raises BusinessError listing every problem."""
        header = self._header()
        header["lines"] = self._lines()
        if self.errors:
            raise BusinessError(MsgCode.VALIDATION, self.errors)
        return header

    # --- header ---

    def _header(self) -> dict[str, Any]:
        number = ci_get(self.model, "FBillNo")
        if number is not None and not isinstance(number, str | int):
            self._error("FBillNo", "字段“单据编号”的值格式不正确")  # sim text
        bill_date = self._date("FDate", required=True)
        finance = ci_get(self.model, "FSaleOrderFinance")
        currency_value = ci_get(finance, "FSettleCurrId") if isinstance(finance, dict) else None
        if currency_value is None:
            currency_value = ci_get(self.model, "FSettleCurrId")
        note = ci_get(self.model, "FNote")
        saler = ci_get(self.model, "FSalerId")
        return {
            "number": str(number).strip() if isinstance(number, str | int) else "",
            "bill_type": self._ref("FBillTypeID", self.sim.bill_types, default=DEFAULT_BILL_TYPE),
            "bill_date": bill_date,
            "sale_org": self._ref("FSaleOrgId", self.sim.orgs),
            "customer": self._ref("FCustId", self.sim.customers),
            "saler": self._number_of(saler) if isinstance(saler, dict) else None,
            "currency": self._ref("FSettleCurrId", self.sim.currencies, value=currency_value, default=DEFAULT_CURRENCY),
            "note": str(note) if note is not None else "",
        }

    # --- entries ---

    def _lines(self) -> list[dict[str, Any]]:
        rows = ci_get(self.model, "FSaleOrderEntry")
        if not isinstance(rows, list) or not rows:
            self._error("FSaleOrderEntry", "单据体“订单明细”至少需要录入一行数据")  # sim text
            return []
        return [self._line(i, row) for i, row in enumerate(rows)]

    def _line(self, index: int, row: Any) -> dict[str, Any]:
        row = row if isinstance(row, dict) else {}
        prefix = f"第{index + 1}行"
        material = self._ref("FMaterialId", self.sim.materials, value=ci_get(row, "FMaterialId"), prefix=prefix)
        qty = self._decimal(row, "FQty", prefix, required=True)
        if qty is not None and qty <= 0:
            self._error("FQty", f"{prefix}“销售数量”必须大于0")  # sim text
        is_free = as_bool(ci_get(row, "FIsFree"), False)
        tax_price = self._decimal(row, "FTaxPrice", prefix)
        price = self._decimal(row, "FPrice", prefix)
        if tax_price is None and price is None and not is_free:
            self._error("FTaxPrice", f"{prefix}“含税单价”和“单价”不能同时为空")  # sim text
        for name, value in (("FTaxPrice", tax_price), ("FPrice", price)):
            if value is not None and value < 0:
                self._error(name, f"{prefix}“{self.LABELS[name]}”不能小于0")  # sim text
        rate = self._decimal(row, "FEntryTaxRate", prefix)
        rate = DEFAULT_TAX_RATE if rate is None else rate
        delivery = self._date("FDeliveryDate", required=False, source=row, prefix=prefix)
        note = ci_get(row, "FEntryNote")
        amounts = compute_amounts(qty or Decimal("0"), rate, tax_price, price, is_free)
        return {
            "material": material,
            "qty": qty or Decimal("0"),
            "tax_rate": rate,
            "delivery_date": delivery,
            "note": str(note) if note is not None else "",
            "is_free": is_free,
            **amounts,
        }

    # --- field helpers ---

    def _error(self, field_name: str, message: str) -> None:
        self.errors.append(error_entry(message, field_name, 0))

    @staticmethod
    def _number_of(value: Any) -> str | None:
        """A base-data reference is ``{"FNumber": "..."}`` (key case ignored, e.g. ``FNUMBER``)."""
        if isinstance(value, dict):
            number = ci_get(value, "FNumber")
            return str(number).strip() if number not in (None, "") else None
        return None

    def _ref(
        self,
        name: str,
        master: dict[str, MasterRecord],
        *,
        value: Any = None,
        default: str | None = None,
        prefix: str = "",
    ) -> MasterRecord:
        """Resolve a base-data field; a missing required one or an unknown number names the field."""
        if value is None:
            value = ci_get(self.model, name) if not prefix else None
        label = self.LABELS[name]
        placeholder = MasterRecord(0, "", "")
        if value is None or (isinstance(value, dict) and self._number_of(value) is None):
            if default is not None:
                return master[default.lower()]
            self._error(name, f"{prefix}字段“{label}”是必填项")
            return placeholder
        number = self._number_of(value)
        if number is None:
            self._error(name, f'{prefix}字段“{label}”的值格式不正确，应为 {{"FNumber": "编码"}}')  # sim text
            return placeholder
        record = master.get(number.lower())
        if record is None:
            if self.verify:
                self._error(name, f"{prefix}字段“{label}”的值“{number}”在系统中不存在或未审核")  # sim text
            else:
                # K3Cloud drops an unresolvable number and then the required check fires.
                self._error(name, f"{prefix}字段“{label}”是必填项（编码“{number}”不存在）")  # sim text
            return placeholder
        return record

    def _decimal(self, row: dict[str, Any], name: str, prefix: str, required: bool = False) -> Decimal | None:
        raw = ci_get(row, name)
        if raw is None or raw == "":
            if required:
                self._error(name, f"{prefix}字段“{self.LABELS[name]}”是必填项")
            return None
        value = parse_decimal(raw)
        if value is None:
            self._error(name, f"{prefix}字段“{self.LABELS[name]}”的值“{raw}”不是有效的数值")  # sim text
        return value

    def _date(
        self, name: str, *, required: bool, source: dict[str, Any] | None = None, prefix: str = ""
    ) -> date | None:
        raw = ci_get(source if source is not None else self.model, name)
        if raw is None or raw == "":
            if required:
                self._error(name, f"{prefix}字段“{self.LABELS[name]}”是必填项")
            return None
        parsed = parse_date(raw)
        if parsed is None:
            self._error(name, f"{prefix}字段“{self.LABELS[name]}”的值“{raw}”不是有效的日期")  # sim text
        return parsed


def compute_amounts(
    qty: Decimal, rate: Decimal, tax_price: Decimal | None, price: Decimal | None, is_free: bool
) -> dict[str, Decimal]:
    """Price/amount arithmetic as K3Cloud does it: tax-inclusive price wins when both are given."""
    factor = Decimal("1") + rate / Decimal("100")
    if is_free and tax_price is None and price is None:
        tax_price = price = Decimal("0")
    if tax_price is not None:
        price = (tax_price / factor).quantize(PRICE_Q, ROUND_HALF_UP)
    elif price is not None:
        tax_price = (price * factor).quantize(PRICE_Q, ROUND_HALF_UP)
    tax_price = tax_price or Decimal("0")
    price = price or Decimal("0")
    all_amount = (tax_price * qty).quantize(AMOUNT_Q, ROUND_HALF_UP)
    amount = (all_amount / factor).quantize(AMOUNT_Q, ROUND_HALF_UP)
    return {"price": price, "tax_price": tax_price, "all_amount": all_amount, "amount": amount}


# --- View rendering -----------------------------------------------------------------------------


def view_ref(record: MasterRecord | None) -> dict[str, Any] | None:
    """A base-data reference as View renders it: Id, Number and the multi-language Name."""
    if record is None:
        return None
    return {
        "Id": record.id,
        "Number": record.number,
        "MultiLanguageText": [{"PkId": record.id, "LocaleId": LCID_ZH_CN, "Name": record.name}],
        "Name": [{"Key": LCID_ZH_CN, "Value": record.name}],
    }


def view_bill(order: SaleOrder) -> dict[str, Any]:
    """The bill data package View answers: ORM property names, ``X_Id`` plus ``X`` for references."""
    finance = {
        "Id": order.id,
        "SettleCurrId_Id": order.currency.id,
        "SettleCurrId": view_ref(order.currency),
        "BillAmount": render_value(order.amount),
        "BillAllAmount": render_value(order.all_amount),
        "BillTaxAmount": render_value(order.all_amount - order.amount),
    }
    return {
        "Id": order.id,
        "BillNo": order.number,
        "DocumentStatus": order.status,
        "CancelStatus": order.cancel_status,
        "CloseStatus": order.close_status,
        "Date": render_date(order.bill_date),
        "Note": order.note,
        "BillTypeID_Id": order.bill_type.id,
        "BillTypeID": view_ref(order.bill_type),
        "SaleOrgId_Id": order.sale_org.id,
        "SaleOrgId": view_ref(order.sale_org),
        "CustId_Id": order.customer.id,
        "CustId": view_ref(order.customer),
        "SalerId_Id": 0,
        "SalerId": {"Number": order.saler} if order.saler else None,
        "CreateDate": render_datetime(order.created_at),
        "ModifyDate": render_datetime(order.modified_at),
        "SaleOrderFinance": [finance],
        "SaleOrderEntry": [view_line(line) for line in order.lines],
    }


def view_line(line: SaleOrderLine) -> dict[str, Any]:
    return {
        "Id": line.entry_id,
        "Seq": line.seq,
        "MaterialId_Id": line.material.id,
        "MaterialId": view_ref(line.material),
        "Qty": render_value(line.qty),
        "Price": render_value(line.price),
        "TaxPrice": render_value(line.tax_price),
        "EntryTaxRate": render_value(line.tax_rate),
        "Amount": render_value(line.amount),
        "AllAmount": render_value(line.all_amount),
        "TaxAmount": render_value(line.all_amount - line.amount),
        "DeliveryDate": render_date(line.delivery_date) if line.delivery_date else None,
        "EntryNote": line.note,
        "IsFree": line.is_free,
    }


__all__ = [
    "KingdeeSimulator",
    "MsgCode",
    "SESSION_COOKIE",
    "SESSION_LOST_MESSAGE",
    "compute_amounts",
]
