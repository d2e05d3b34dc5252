"""TOP signing known answers and time formats.

Sources: TOP "API调用方法详解" (open.taobao.com docId=101617, mirrored at
https://developer.alibaba.com/docs/doc.htm?articleId=101617): parameters sorted by name, ``sign``
left out, names and values concatenated, ``md5(secret + s + secret)`` / HMAC_MD5 / HMAC_SHA256
keyed with the secret, upper-case hex; its worked example (secret ``helloworld``) signs to
``66987CB115214E59E6EC978214934FB8``. The HMAC expectations are computed here independently with
``hmac``/``hashlib`` from the spelled-out base string, and anchored with RFC 2202 / RFC 4231 vectors.
"""

from __future__ import annotations

import hashlib
import hmac
from datetime import UTC, datetime, timedelta, timezone

import pytest

from connectors.taobao.signing import (
    format_top_time,
    parse_top_time,
    sign_base_string,
    top_sign,
    top_timestamp,
)

DOC_PARAMS = {
    "method": "taobao.item.seller.get",
    "app_key": "12345678",
    "session": "test",
    "timestamp": "2016-01-01 12:00:00",
    "format": "json",
    "v": "2.0",
    "sign_method": "md5",
    "fields": "num_iid,title,nick,price,num",
    "num_iid": "11223344",
}
DOC_BASE = ("app_key12345678fieldsnum_iid,title,nick,price,numformatjsonmethodtaobao.item.seller.get"
            "num_iid11223344sessiontestsign_methodmd5timestamp2016-01-01 12:00:00v2.0")
DOC_SECRET = "helloworld"
DOC_SIGN = "66987CB115214E59E6EC978214934FB8"


def test_documented_md5_example():
    assert sign_base_string(DOC_PARAMS) == DOC_BASE
    assert top_sign(DOC_PARAMS, DOC_SECRET, "md5") == DOC_SIGN
    # the documented value is md5(secret + base + secret), upper-case hex
    assert hashlib.md5((DOC_SECRET + DOC_BASE + DOC_SECRET).encode()).hexdigest().upper() == DOC_SIGN


def test_hmac_methods_over_the_documented_parameters():
    for method, digest in (("hmac", hashlib.md5), ("hmac-sha256", hashlib.sha256)):
        params = DOC_PARAMS | {"sign_method": method}
        base = DOC_BASE.replace("sign_methodmd5", f"sign_method{method}")
        expected = hmac.new(DOC_SECRET.encode(), base.encode(), digest).hexdigest().upper()
        assert top_sign(params, DOC_SECRET, method) == expected
    assert len(top_sign(DOC_PARAMS, DOC_SECRET, "hmac")) == 32
    assert len(top_sign(DOC_PARAMS, DOC_SECRET, "hmac-sha256")) == 64


def test_hmac_rfc_vectors():
    # one parameter named "Hi" with value " There" concatenates to the RFCs' "Hi There"
    assert top_sign({"Hi": " There"}, "\x0b" * 16, "hmac") == "9294727A3638BB1C13F48EF8158BFC9D"
    assert top_sign({"Hi": " There"}, "\x0b" * 20, "hmac-sha256") == (
        "B0344C61D8DB38535CA8AFCEAF0BF12B881DC200C9833DA726E9376C2E32CFF7")


def test_base_string_rules():
    # the documentation's ordering example: ASCII order puts foo_bar before foobar
    assert sign_base_string({"foo": "1", "bar": "2", "foo_bar": "3", "foobar": "4"}) == "bar2foo1foo_bar3foobar4"
    # sign never takes part; empty and missing values are skipped like the SDKs do
    assert sign_base_string({"a": "1", "sign": "XYZ", "b": "", "c": None}) == "a1"
    assert top_sign(DOC_PARAMS | {"sign": "whatever", "empty": ""}, DOC_SECRET, "md5") == DOC_SIGN
    # booleans travel lower-case, numbers as text, UTF-8 for the digest
    assert sign_base_string({"use_has_next": False, "page_no": 3}) == "page_no3use_has_nextfalse"
    chinese = top_sign({"name": "张三"}, "s", "md5")
    assert chinese == hashlib.md5("sname张三s".encode()).hexdigest().upper()


def test_unknown_sign_method():
    with pytest.raises(ValueError):
        top_sign(DOC_PARAMS, DOC_SECRET, "sha1")


def test_times_are_gmt8():
    assert format_top_time(datetime(2016, 1, 1, 4, 0, tzinfo=UTC)) == "2016-01-01 12:00:00"
    assert format_top_time(datetime(2016, 1, 1, 4, 0, 0, 999999, tzinfo=UTC)) == "2016-01-01 12:00:00"
    new_york = timezone(timedelta(hours=-5))
    assert format_top_time(datetime(2015, 12, 31, 23, 0, tzinfo=new_york)) == "2016-01-01 12:00:00"
    assert parse_top_time("2016-01-01 12:00:00") == datetime(2016, 1, 1, 4, 0, tzinfo=UTC)
    assert parse_top_time("2016-01-01 12:00:00").tzinfo is UTC
    with pytest.raises(ValueError):
        format_top_time(datetime(2016, 1, 1, 12, 0))  # naive


def test_timestamp_is_now_in_gmt8():
    stamp = datetime.strptime(top_timestamp(), "%Y-%m-%d %H:%M:%S")
    beijing_now = datetime.now(UTC).replace(tzinfo=None) + timedelta(hours=8)
    assert abs((stamp - beijing_now).total_seconds()) < 5
