"""Douyin shop (抖店) connector against a respx-mocked open platform.

The fake gateway here recomputes every signature by hand from the rule of the official SDKs (Java
``SignUtil.sign``, Go ``utils/sign_util.go``): ``secret + "app_key"+k + "method"+m + "param_json"+p +
"timestamp"+t + "v2" + secret``, MD5 or HMAC-SHA256 (key = secret), lower-case hex; never with the
connector's helper.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
import respx

from canonical import Shipment
from connectors.douyin import CARRIER_CODES, DouyinConnector, doudian_sign, param_json, push_sign, sign_pattern
from connectors.errors import AuthError, InvalidRequestError, ThrottledError, TransientError
from connectors.http import RetryPolicy

BASE = "http://doudian.test"
APP_KEY, SECRET, TOKEN, SHOP = "7152333376438649396", "s3cr3t", "tok-4463798-abcdef", "4463798"
ORDER = "4934517287891236517"
LINE_A, LINE_B = "4934517287891236518", "4934517287891236519"
T0 = datetime(2026, 11, 11, 0, 0, tzinfo=UTC)

# --- known answers ---------------------------------------------------------------------------------
# The SDK sources give the rule but no worked example with a value, so these were computed outside
# Python from the pattern the official SDKs build (java SignUtil.sign / go utils.Sign), with
#   P='s3cr3tapp_key7152333376438649396methodorder.orderDetailparam_json{"shop_order_id":"4934517287891236517"}
#      timestamp1617355413v2s3cr3t'   (one line)
#   printf '%s' "$P" | md5sum                                   -> KAT_MD5
#   printf '%s' "$P" | openssl dgst -sha256 -hmac s3cr3t       -> KAT_HMAC
# and the push signature (zsmhub/doudian-sdk message/doudian_sign.go: md5(app_key + body + secret)) with
#   printf '%s' "7152333376438649396${B}s3cr3t" | md5sum        -> KAT_PUSH
KAT_PARAM = '{"shop_order_id":"4934517287891236517"}'
KAT_TS = "1617355413"
KAT_MD5 = "1235a28e9377da0a875c062de45d2987"
KAT_HMAC = "de50ed076c645f306494b209954e22315c746bf5d432cf43023ca7bb7cc9b3c6"
KAT_PUSH_BODY = (b'[{"tag":"100","msg_id":"7000000000000000001",'
                 b'"data":"{\\"p_id\\":4934517287891236517,\\"shop_id\\":4463798}"}]')
KAT_PUSH = "de68a48aaa96f8e599f5bcb5a3b044ac"


def test_sign_known_answers() -> None:
    assert sign_pattern(APP_KEY, SECRET, "order.orderDetail", KAT_PARAM, KAT_TS) == (
        'secretapp_key7152333376438649396methodorder.orderDetailparam_json{"shop_order_id":"4934517287891236517"}'
        'timestamp1617355413v2secret').replace("secret", SECRET)
    assert doudian_sign(APP_KEY, SECRET, "order.orderDetail", KAT_PARAM, KAT_TS, "md5") == KAT_MD5
    assert doudian_sign(APP_KEY, SECRET, "order.orderDetail", KAT_PARAM, KAT_TS, "hmac-sha256") == KAT_HMAC
    assert push_sign(APP_KEY, SECRET, KAT_PUSH_BODY) == KAT_PUSH


def test_param_json_is_sorted_compact_and_keeps_unicode() -> None:
    # Java SignUtil.sortParamJson sorts keys at every depth, lists of objects included; Go's
    # json.Marshal of a map does the same with SetEscapeHTML(false)
    doc = {"size": 10, "page": 0, "b": {"z": 1, "a": [{"y": "<&>", "x": "中文"}]}}
    assert param_json(doc) == '{"b":{"a":[{"x":"中文","y":"<&>"}],"z":1},"page":0,"size":10}'
    assert param_json({}) == "{}"


# --- fake gateway ----------------------------------------------------------------------------------


def hand_sign(query: dict[str, str], body: str) -> str:
    text = (SECRET + "app_key" + query["app_key"] + "method" + query["method"] + "param_json" + body
            + "timestamp" + query["timestamp"] + "v2" + SECRET)
    if query.get("sign_method") == "hmac-sha256":
        return hmac.new(SECRET.encode(), text.encode(), hashlib.sha256).hexdigest()
    return hashlib.md5(text.encode()).hexdigest()


def ok(data: Any) -> dict[str, Any]:
    return {"code": 10000, "msg": "success", "sub_code": "", "sub_msg": "", "log_id": "log-1", "data": data}


def err(code: int, msg: str, sub_code: str = "", sub_msg: str = "") -> dict[str, Any]:
    return {"code": code, "msg": msg, "sub_code": sub_code, "sub_msg": sub_msg, "log_id": "log-e"}


class FakeDoudian:
    """Checks the system parameters and signature, then answers per method via ``handlers``."""

    def __init__(self) -> None:
        self.handlers: dict[str, Callable[[dict[str, Any]], Any]] = {}
        self.calls: list[tuple[str, dict[str, Any]]] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        query = dict(request.url.params)
        body = request.content.decode()
        method = query["method"]
        assert request.method == "POST"
        assert request.url.path == "/" + method.replace(".", "/")
        assert query["app_key"] == APP_KEY and query["access_token"] == TOKEN and query["v"] == "2"
        assert abs(int(query["timestamp"]) - datetime.now(UTC).timestamp()) < 600
        assert query["sign"] == hand_sign(query, body), "bad signature"
        params = json.loads(body)
        assert body == json.dumps(params, ensure_ascii=False, separators=(",", ":"), sort_keys=True)
        self.calls.append((method, params))
        answer = self.handlers[method](params)
        return httpx.Response(200, json=answer)

    def methods(self) -> list[str]:
        return [m for m, _ in self.calls]


def make_connector(**overrides: Any) -> DouyinConnector:
    settings = {"base_url": BASE, "app_key": APP_KEY, "shop_id": SHOP} | overrides
    conn = DouyinConnector.from_config("dy-shop", settings, {"app_secret": SECRET, "access_token": TOKEN})
    assert isinstance(conn, DouyinConnector)
    conn.api.retry = RetryPolicy(attempts=3, max_elapsed_s=5, initial_s=0.001, max_s=2)
    return conn


@pytest.fixture
def fake() -> Any:
    gateway = FakeDoudian()
    with respx.mock(assert_all_called=False) as mock:
        mock.route(host="doudian.test").mock(side_effect=gateway)
        yield gateway


def shop_order(order_id: str, updated: int, status: int = 2, lines: tuple[str, ...] = (LINE_A,),
               **extra: Any) -> dict[str, Any]:
    return {"order_id": order_id, "shop_id": int(SHOP), "order_status": status, "update_time": updated,
            "create_time": updated - 60, "sku_order_list": [{"order_id": x, "item_num": 2} for x in lines],
            "logistics_info": [], **extra}


# --- calls -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("sign_method", ["md5", "hmac-sha256"])
async def test_get_order_is_signed_and_returns_the_detail(fake: FakeDoudian, sign_method: str) -> None:
    fake.handlers["order.orderDetail"] = lambda p: ok({"shop_order_detail": shop_order(p["shop_order_id"], 100)})
    conn = make_connector(sign_method=sign_method)
    record = await conn.get_order(ORDER)
    assert record.external_id == ORDER and record.modified_at == datetime.fromtimestamp(100, UTC)
    assert fake.calls == [("order.orderDetail", {"shop_order_id": ORDER})]
    assert conn.shop_of(record.payload) == SHOP


async def test_pull_walks_pages_back_to_front_and_splits_windows(fake: FakeDoudian) -> None:
    since, until = T0, T0 + timedelta(hours=30)
    boundary = int((T0 + timedelta(hours=24)).timestamp())
    first_window = [shop_order(str(10**18 + i), int(since.timestamp()) + 10 + i) for i in range(250)]
    at_edge = shop_order(str(2 * 10**18), boundary)  # updated exactly at the window boundary

    def search(p: dict[str, Any]) -> dict[str, Any]:
        assert p["order_by"] == "update_time" and p["order_asc"] is False and p["size"] == 100
        low, high = p["update_time_start"], p["update_time_end"]
        rows = [o for o in [*first_window, at_edge] if low <= o["update_time"] <= high]
        rows.sort(key=lambda o: o["update_time"], reverse=True)
        page = rows[p["page"] * 100:(p["page"] + 1) * 100]
        if p["page"] == 1:
            page = [*page, at_edge] if at_edge in rows else page  # a repeated row within the window
        return ok({"page": p["page"], "size": 100, "total": len(rows), "shop_order_list": page})

    fake.handlers["order.searchList"] = search
    conn = make_connector()
    batches = [b async for b in conn.pull_orders(since, until)]
    windows = sorted({(p["update_time_start"], p["update_time_end"]) for m, p in fake.calls})
    assert windows == [(int(since.timestamp()), boundary - 1), (boundary, int(until.timestamp()) - 1)]
    first_pages = [p["page"] for m, p in fake.calls if p["update_time_start"] == int(since.timestamp())]
    assert first_pages == [0, 2, 1, 0]  # the total first, then from the last page back
    ids = [r.external_id for b in batches for r in b]
    assert len(ids) == len(set(ids)) == 251
    assert all(b == sorted(b, key=lambda r: r.modified_at) for b in batches)
    listed = await conn.list_order_ids(since, until)
    assert len(listed) == 251 and listed[-1][0] == at_edge["order_id"]


async def test_flow_control_is_retried_then_raised(fake: FakeDoudian) -> None:
    answers = [err(60000, "触发限流，请稍后重试", "isp.traffic-limited:2010067", "请稍后重试"),
               ok({"shop_order_detail": shop_order(ORDER, 5)})]
    fake.handlers["order.orderDetail"] = lambda p: answers.pop(0)
    conn = make_connector()
    conn.api.retry = RetryPolicy(attempts=3, max_elapsed_s=5, initial_s=0.001, max_s=2)
    assert (await conn.get_order(ORDER)).external_id == ORDER  # waited the second out, then succeeded
    fake.handlers["order.orderDetail"] = lambda p: err(60000, "触发限流，请稍后重试", "isp.traffic-limited:1")
    conn.api.retry = RetryPolicy(attempts=1, max_elapsed_s=1, initial_s=0.001, max_s=0.01)
    with pytest.raises(ThrottledError) as caught:
        await conn.get_order(ORDER)
    assert caught.value.retry_after == 1.0


@pytest.mark.parametrize(("answer", "error"), [
    (err(40003, "非法的参数", "isv.signature-invalid", "签名校验失败"), AuthError),
    (err(40003, "非法的参数", "isv.access-token-expired", "access_token已过期"), AuthError),
    (err(30001, "操作权限不足", "dop.authorization-no-existed", "店铺授权已失效，请重新授权"), AuthError),
    (err(20000, "服务不可用", "dop.service-error", "服务繁忙"), TransientError),
    (err(40004, "非法的参数", "isv.parameter-invalid", "size超过限制"), InvalidRequestError),
])
async def test_errors_are_classified(fake: FakeDoudian, answer: dict[str, Any], error: type[Exception]) -> None:
    fake.handlers["order.orderDetail"] = lambda p: answer
    conn = make_connector()
    conn.api.retry = RetryPolicy(attempts=1, max_elapsed_s=1, initial_s=0.001, max_s=0.01)
    with pytest.raises(error) as caught:
        await conn.get_order(ORDER)
    assert TOKEN not in str(caught.value) and SECRET not in str(caught.value)


# --- write-back ------------------------------------------------------------------------------------


def shipment(tracking: str = "SF1234567890", carrier: str = "SF") -> Shipment:
    return Shipment(order_key=f"douyin:{SHOP}:{ORDER}", carrier_code=carrier, tracking_number=tracking,
                    shipped_at=T0)


async def test_whole_order_write_back_and_repeat(fake: FakeDoudian) -> None:
    shipped = shop_order(ORDER, 9, status=3, logistics_info=[
        {"tracking_no": "SF1234567890", "company": "shunfeng", "product_info": [{"sku_order_id": LINE_A}]}])
    fake.handlers["order.logisticsAdd"] = lambda p: ok({})
    conn = make_connector()
    assert (await conn.push_shipment(ORDER, shipment())).taken
    assert fake.calls[-1] == ("order.logisticsAdd", {"order_id": ORDER, "company_code": "shunfeng",
                                                     "logistics_code": "SF1234567890"})
    fake.handlers["order.logisticsAdd"] = lambda p: err(50002, "业务处理失败", "isv.business-failed:12010",
                                                        "订单已发货，不能重复发货")
    fake.handlers["order.orderDetail"] = lambda p: ok({"shop_order_detail": shipped})
    again = await conn.push_shipment(ORDER, shipment())
    assert not again.taken and again.tracking_on_platform == ["SF1234567890"]
    assert again.conflicts_with("YT0000000001")
    fake.handlers["order.orderDetail"] = lambda p: ok({"shop_order_detail": shop_order(ORDER, 9, status=4)})
    with pytest.raises(InvalidRequestError):  # refused and not shipped (cancelled): a real refusal
        await conn.push_shipment(ORDER, shipment())


async def test_split_package_uses_multi_pack_with_an_idempotency_key(fake: FakeDoudian) -> None:
    detail = shop_order(ORDER, 9, lines=(LINE_A, LINE_B))
    fake.handlers["order.orderDetail"] = lambda p: ok({"shop_order_detail": detail})
    fake.handlers["order.logisticsAddMultiPack"] = lambda p: ok({"pack_list": [{"pack_id": "1"}]})
    conn = make_connector(carriers={"sf": "sf-custom"})
    assert (await conn.push_shipment(ORDER, shipment(), line_ids=[LINE_B])).taken
    method, params = fake.calls[-1]
    assert method == "order.logisticsAddMultiPack"
    pack = params["pack_list"][0]
    assert pack == {"company_code": "sf-custom", "logistics_code": "SF1234567890",
                    "shipped_order_info": [{"shipped_num": 2, "shipped_order_id": LINE_B}]}
    first_request_id = params["request_id"]
    await conn.push_shipment(ORDER, shipment(), line_ids=[LINE_B])
    assert fake.calls[-1][1]["request_id"] == first_request_id  # same package, same key
    detail["logistics_info"] = [{"tracking_no": "SF1234567890", "product_info": [{"sku_order_id": LINE_B}]}]
    calls = len(fake.calls)
    repeat = await conn.push_shipment(ORDER, shipment(), line_ids=[LINE_B])
    assert not repeat.taken and repeat.tracking_on_platform == ["SF1234567890"]
    assert fake.methods()[calls:] == ["order.orderDetail"]  # not sent again
    with pytest.raises(InvalidRequestError):
        await conn.push_shipment(ORDER, shipment(), line_ids=["4934517287891239999"])


def test_carrier_table_and_override() -> None:
    conn = make_connector(carriers={"DBL": "debangkuaidi", "XYZ": "xyz"})
    assert CARRIER_CODES["SF"] == "shunfeng" and conn.company_code("zto") == "zhongtong"
    assert conn.company_code("DBL") == "debangkuaidi" and conn.company_code("xyz") == "xyz"
    with pytest.raises(InvalidRequestError):
        conn.company_code("NOPE")


# --- receivers -------------------------------------------------------------------------------------


async def test_shippable_receiver_decrypts_with_the_order_as_auth_id(fake: FakeDoudian) -> None:
    clear = {"~n~1~": "张三", "$$t$1$$": "13812345678", "#d#1##": "文一西路969号"}

    def decrypt(p: dict[str, Any]) -> dict[str, Any]:
        assert {c["auth_id"] for c in p["cipher_infos"]} == {ORDER}
        return ok({"decrypt_infos": [{"auth_id": c["auth_id"], "cipher_text": c["cipher_text"], "err_no": 0,
                                      "decrypt_text": clear[c["cipher_text"]]} for c in p["cipher_infos"]],
                   "custom_err": {"err_code": 0}})

    fake.handlers["order.batchDecrypt"] = decrypt
    payload = {"order_id": ORDER, "encrypt_post_receiver": "~n~1~", "encrypt_post_tel": "$$t$1$$",
               "post_addr": {"province": {"name": "浙江省"}, "city": {"name": "杭州市"}, "town": {"name": "西湖区"},
                             "street": {"name": "文新街道"}, "detail": "", "encrypt_detail": "#d#1##"}}
    got = await make_connector().shippable_receiver(payload)
    assert got == {"name": "张三", "mobile": "13812345678", "street": "文一西路969号", "province": "浙江省",
                   "city": "杭州市", "district": "西湖区", "town": "文新街道"}
    fake.handlers["order.batchDecrypt"] = lambda p: ok({"decrypt_infos": [
        {"auth_id": ORDER, "cipher_text": c["cipher_text"], "err_no": 300008, "err_msg": "无权限"}
        for c in p["cipher_infos"]]})
    with pytest.raises(InvalidRequestError):
        await make_connector().shippable_receiver(payload)


# --- pushes ----------------------------------------------------------------------------------------


def push(messages: list[dict[str, Any]], secret_: str = SECRET) -> tuple[dict[str, str], bytes]:
    body = json.dumps(messages, separators=(",", ":")).encode()
    sign = hashlib.md5(APP_KEY.encode() + body + secret_.encode()).hexdigest()
    return {"app-id": APP_KEY, "event-sign": sign, "content-type": "application/json"}, body


async def test_push_is_verified_and_turned_into_order_events() -> None:
    conn = make_connector()
    messages = [
        {"tag": "101", "msg_id": "m-1", "data": json.dumps({"p_id": int(ORDER), "s_ids": [int(LINE_A)]})},
        {"tag": "206", "msg_id": "m-2", "data": json.dumps({"p_id": int(ORDER), "s_id": int(LINE_A)})},
        {"tag": "101", "msg_id": "m-1", "data": json.dumps({"p_id": int(ORDER)})},  # repeated in the batch
        {"tag": "400", "msg_id": "m-3", "data": json.dumps({"product_id": 1})},  # not about an order
    ]
    headers, body = push(messages)
    result = await conn.handle_push(headers, {}, body)
    assert result.status_code == 200 and json.loads(result.body) == {"code": 0, "msg": "success"}
    assert [(e["type"], e["external_id"], e["event_id"], e["record"]) for e in result.events] == [
        ("order_changed", ORDER, "m-1", None), ("order_changed", ORDER, "m-2", None)]
    redelivered = await conn.handle_push(headers, {}, body)  # at-least-once: same msg_ids again
    assert [e["event_id"] for e in redelivered.events] == ["m-1", "m-2"]
    assert len({e["event_id"] for e in [*result.events, *redelivered.events]}) == 2  # the engine keeps one each


async def test_forged_push_is_refused() -> None:
    conn = make_connector()
    headers, body = push([{"tag": "106", "msg_id": "x", "data": json.dumps({"p_id": int(ORDER)})}], "wrong")
    result = await conn.handle_push(headers, {}, body)
    assert result.status_code == 401 and result.events == []
    headers, body = push([{"tag": "106", "msg_id": "x", "data": json.dumps({"p_id": int(ORDER)})}])
    tampered = body.replace(b"106", b"101")
    assert (await conn.handle_push(headers, {}, tampered)).status_code == 401
    assert (await conn.handle_push({**headers, "app-id": "other"}, {}, body)).status_code == 401
