"""The demo product catalogue: one item master shared by every simulator.

The Taobao simulator sells these SKUs, the Qimen WMS stocks them and the Kingdee ERP knows them as
materials, so an order line can be followed across the three systems. It is plain data on
purpose (no imports from the project, no randomness): ids must never change between runs, because
tests, fixtures and cross-reference tables are keyed on them.

Each entry is a dict:

* ``sku`` -- our SKU code (``TD-SKU-0001``); it is also the Taobao ``outer_sku_id`` (商家编码) and the
  WMS ``itemCode`` / ERP material number.
* ``title`` -- item title plus the SKU's specification values, ``item_title`` -- the listing title
  (Taobao order ``title``), ``properties`` -- Taobao ``sku_properties_name`` style ("颜色分类:白色;尺码:M"),
  empty for single-specification items.
* ``price`` -- unit price in CNY as a string with two decimals; ``weight_g`` -- grams per unit.
* ``category`` -- a coarse demo category.
* ``num_iid`` (int, the Taobao item id, shared by the SKUs of one listing), ``sku_id`` (int, the
  Taobao SKU id), ``outer_iid`` (the listing's 商家编码) and ``outer_sku_id`` (= ``sku``).
"""

from __future__ import annotations

from typing import Any

# sku, item_title, properties, price, weight_g, category,
#  num_iid, sku_id, outer_iid
_ROWS: tuple[tuple[Any, ...], ...] = (
    ("TD-SKU-0001", "纯棉圆领短袖T恤", "颜色分类:白色;尺码:M", "59.00", 200, "服饰",
     652311047919, 5012345601031, "TD-SPU-001"),
    ("TD-SKU-0002", "纯棉圆领短袖T恤", "颜色分类:白色;尺码:L", "59.00", 200, "服饰",
     652311047919, 5012345602062, "TD-SPU-001"),
    ("TD-SKU-0003", "纯棉圆领短袖T恤", "颜色分类:黑色;尺码:M", "59.00", 200, "服饰",
     652311047919, 5012345603093, "TD-SPU-001"),
    ("TD-SKU-0004", "纯棉圆领短袖T恤", "颜色分类:黑色;尺码:L", "59.00", 200, "服饰",
     652311047919, 5012345604124, "TD-SPU-001"),
    ("TD-SKU-0005", "男士休闲直筒牛仔裤", "尺码:30", "169.00", 650, "服饰",
     652311055838, 5012345605155, "TD-SPU-002"),
    ("TD-SKU-0006", "男士休闲直筒牛仔裤", "尺码:32", "169.00", 650, "服饰",
     652311055838, 5012345606186, "TD-SPU-002"),
    ("TD-SKU-0007", "女士羊毛混纺围巾", "颜色分类:驼色", "129.00", 180, "服饰",
     652311063757, 5012345607217, "TD-SPU-003"),
    ("TD-SKU-0008", "女士羊毛混纺围巾", "颜色分类:浅灰", "129.00", 180, "服饰",
     652311063757, 5012345608248, "TD-SPU-003"),
    ("TD-SKU-0009", "运动速干中筒袜 5双装", "", "39.90", 250, "服饰",
     652311071676, 5012345609279, "TD-SPU-004"),
    ("TD-SKU-0010", "北欧陶瓷马克杯 350ml", "颜色分类:奶白", "45.00", 380, "家居",
     652311079595, 5012345610310, "TD-SPU-005"),
    ("TD-SKU-0011", "北欧陶瓷马克杯 350ml", "颜色分类:雾蓝", "45.00", 380, "家居",
     652311079595, 5012345611341, "TD-SPU-005"),
    ("TD-SKU-0012", "记忆棉护颈枕", "", "199.00", 1200, "家居",
     652311087514, 5012345612372, "TD-SPU-006"),
    ("TD-SKU-0013", "加厚珊瑚绒毛毯 150x200cm", "", "139.00", 1600, "家居",
     652311095433, 5012345613403, "TD-SPU-007"),
    ("TD-SKU-0014", "316不锈钢保温杯 500ml", "颜色分类:银色", "89.00", 420, "家居",
     652311103352, 5012345614434, "TD-SPU-008"),
    ("TD-SKU-0015", "316不锈钢保温杯 500ml", "颜色分类:曜石黑", "89.00", 420, "家居",
     652311103352, 5012345615465, "TD-SPU-008"),
    ("TD-SKU-0016", "竹制桌面收纳盒三件套", "", "68.00", 900, "家居",
     652311111271, 5012345616496, "TD-SPU-009"),
    ("TD-SKU-0017", "儿童硅胶餐具套装", "", "69.00", 450, "家居",
     652311119190, 5012345617527, "TD-SPU-010"),
    ("TD-SKU-0018", "主动降噪无线蓝牙耳机", "颜色分类:白色", "299.00", 150, "数码配件",
     652311127109, 5012345618558, "TD-SPU-011"),
    ("TD-SKU-0019", "主动降噪无线蓝牙耳机", "颜色分类:黑色", "299.00", 150, "数码配件",
     652311127109, 5012345619589, "TD-SPU-011"),
    ("TD-SKU-0020", "20000毫安快充移动电源", "", "129.00", 420, "数码配件",
     652311135028, 5012345620620, "TD-SPU-012"),
    ("TD-SKU-0021", "Type-C快充数据线 1米", "", "19.90", 60, "数码配件",
     652311142947, 5012345621651, "TD-SPU-013"),
    ("TD-SKU-0022", "87键机械键盘 青轴", "", "349.00", 1100, "数码配件",
     652311150866, 5012345622682, "TD-SPU-014"),
    ("TD-SKU-0023", "铝合金桌面手机支架", "", "35.00", 160, "数码配件",
     652311158785, 5012345623713, "TD-SPU-015"),
    ("TD-SKU-0024", "西湖龙井 明前特级 250g", "", "398.00", 300, "食品",
     652311166704, 5012345624744, "TD-SPU-016"),
    ("TD-SKU-0025", "云南小粒咖啡豆 500g", "", "88.00", 520, "食品",
     652311174623, 5012345625775, "TD-SPU-017"),
    ("TD-SKU-0026", "每日坚果 30袋装", "", "129.00", 780, "食品",
     652311182542, 5012345626806, "TD-SPU-018"),
    ("TD-SKU-0027", "古法手工红糖 400g", "", "25.80", 420, "食品",
     652311190461, 5012345627837, "TD-SPU-019"),
    ("TD-SKU-0028", "氨基酸温和洁面乳 120g", "", "79.00", 160, "美妆",
     652311198380, 5012345628868, "TD-SPU-020"),
    ("TD-SKU-0029", "玻尿酸补水保湿面膜 10片", "", "99.00", 320, "美妆",
     652311206299, 5012345629899, "TD-SPU-021"),
    ("TD-SKU-0030", "清爽防晒乳 SPF50+ 50ml", "", "128.00", 90, "美妆",
     652311214218, 5012345630930, "TD-SPU-022"),
)


def _spec(properties: str) -> str:
    """Turn "颜色分类:白色;尺码:M" into "白色 M": the values only, as shops show them in titles."""
    return " ".join(pair.split(":", 1)[-1] for pair in properties.split(";") if pair)


CATALOG: list[dict[str, Any]] = [
    {
        "sku": sku,
        "title": f"{item_title} {_spec(properties)}".strip(),
        "item_title": item_title,
        "properties": properties,
        "price": price,
        "weight_g": weight_g,
        "category": category,
        "num_iid": num_iid,
        "sku_id": sku_id,
        "outer_iid": outer_iid,
        "outer_sku_id": sku,
    }
    for sku, item_title, properties, price, weight_g, category, num_iid, sku_id, outer_iid in _ROWS
]
"""The 30 demo SKUs, in a stable order."""

BY_SKU: dict[str, dict[str, Any]] = {entry["sku"]: entry for entry in CATALOG}
"""Catalogue entries by our SKU code."""
