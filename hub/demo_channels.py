"""The demo's marketplaces beyond Taobao: one simulator per platform, its registration, its figures.

Each :class:`Marketplace` knows how to build its platform's simulator (seeded from the same
catalogue), how the connector is registered against it (the registration contract of each kind),
and how to read from the simulator's own state what the platform holds: orders created,
deliberately malformed ones, orders with a waybill written back.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from connectors.registry import Registration
from simulators.server import BackgroundServer


@dataclass
class Marketplace:
    channel: str
    kind: str
    sim: Any
    shop: str
    connector: str
    registration: Callable[[str], Registration]  # base URL of the running simulator → registration
    server: BackgroundServer = field(init=False)

    def __post_init__(self) -> None:
        self.server = BackgroundServer(self.sim.app)

    def register(self) -> Registration:
        return self.registration(self.server.base_url)

    def figures(self) -> dict[str, int]:
        state = self.sim.state()
        return {"orders_created": int(state["orders_created"]), "orders_malformed": int(state["orders_malformed"]),
                "tracking_written_back": int(state["shipped_count"])}


def _jd(seed: int, run_id: str, orders: int, now: datetime) -> Marketplace:
    from simulators.jd import JdSimulator

    key, secret, token, shop = "jd-demo-app", "demo-jd-secret-0004", f"jd-token-{run_id}", f"jd-{run_id}"
    sim = JdSimulator(apps={key: secret}, shops={token: shop}, orders_per_shop=orders, seed=seed, now=now)
    return Marketplace("jd", "jd", sim, shop, "demo-jd", lambda url: Registration(
        name="demo-jd", kind="jd", settings={"base_url": f"{url}/routerjson", "app_key": key, "shop": shop},
        secrets={"app_secret": secret, "access_token": token}))


def _pdd(seed: int, run_id: str, orders: int, now: datetime) -> Marketplace:
    from simulators.pdd import PddSimulator

    client, secret, token, shop = "pdd-demo-client", "demo-pdd-secret-0005", f"pdd-token-{run_id}", f"pdd-{run_id}"
    sim = PddSimulator(clients={client: secret}, shops={token: shop}, orders_per_shop=orders, seed=seed, now=now)
    return Marketplace("pinduoduo", "pdd", sim, shop, "demo-pdd", lambda url: Registration(
        name="demo-pdd", kind="pdd", settings={"base_url": f"{url}/api/router", "client_id": client, "shop": shop},
        secrets={"client_secret": secret, "access_token": token}))


def _shopify(seed: int, run_id: str, orders: int, now: datetime) -> Marketplace:
    from simulators.shopify import ShopifySimulator

    token, secret, shop = f"shpat_demo_{run_id}", "shpss_demo_secret_0006", f"shopify-{run_id}"
    sim = ShopifySimulator(stores={token: f"{shop}.myshopify.com"}, client_secret=secret, orders_per_shop=orders,
                           seed=seed, now=now)
    return Marketplace("shopify", "shopify", sim, shop, "demo-shopify", lambda url: Registration(
        name="demo-shopify", kind="shopify", settings={"base_url": url, "api_version": "2025-10", "shop": shop},
        secrets={"access_token": token, "client_secret": secret}))


def _douyin(seed: int, run_id: str, orders: int, now: datetime) -> Marketplace:
    from simulators.douyin import DouyinSimulator

    key, secret, token, shop_id = "douyin-demo-app", "demo-douyin-secret-0007", f"dy-token-{run_id}", f"{run_id}"
    sim = DouyinSimulator(apps={key: secret}, shops={token: shop_id}, orders_per_shop=orders, seed=seed, now=now)
    return Marketplace("douyin", "douyin", sim, shop_id, "demo-douyin", lambda url: Registration(
        name="demo-douyin", kind="douyin", settings={"base_url": url, "app_key": key, "shop_id": shop_id},
        secrets={"app_secret": secret, "access_token": token}))


def _amazon(seed: int, run_id: str, orders: int, now: datetime) -> Marketplace:
    from simulators.amazon import AmazonSimulator

    client, secret, refresh, shop = "amzn1.application-oa2-client.demo", "demo-amazon-secret-0008", \
        f"Atzr|demo-{run_id}", f"amazon-{run_id}"
    # the demo runs minutes, not days: no usage-plan limits (the connector still honours 429s)
    sim = AmazonSimulator(apps={client: secret}, shops={refresh: shop}, orders_per_shop=orders, seed=seed,
                          usage_plans={})
    return Marketplace("amazon", "amazon", sim, shop, "demo-amazon", lambda url: Registration(
        name="demo-amazon", kind="amazon",
        settings={"base_url": url, "lwa_endpoint": f"{url}/auth/o2/token", "marketplace_ids": ["ATVPDKIKX0DER"],
                  "shop": shop, "seller_id": sim.seller_id(shop)},
        secrets={"client_id": client, "client_secret": secret, "refresh_token": refresh}))


#: the demo's marketplaces besides Taobao, in the order they are shown
BUILDERS: dict[str, Callable[[int, str, int, datetime], Marketplace]] = {"jd": _jd, "douyin": _douyin,
                                                                         "shopify": _shopify, "pdd": _pdd,
                                                                         "amazon": _amazon}
