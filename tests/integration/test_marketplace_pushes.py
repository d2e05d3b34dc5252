"""Marketplace pushes of the real platforms' formats, on the embedded Temporal server: Shopify
webhooks (X-Shopify-Hmac-Sha256) and Douyin messages (event-sign) sent by their simulators to the
hub's POST /hooks/{connector} feed a push-only flow (``schedule: {webhooks: true}``): every order
reaches the WMS and the ERP once, a redelivery changes nothing, a forged push gets 401."""

from __future__ import annotations

import asyncio

import httpx
from test_order_sync import setup_systems, wait_for

from canonical import hub_code, order_key
from connectors.registry import Registration, register
from flows.model import parse_flow
from flows.runtime import FlowOps
from hub.runtime import HubRuntime
from simulators.douyin import DouyinSimulator
from simulators.server import BackgroundServer
from simulators.shopify import ShopifySimulator

CONTEXT = {"warehouse_code": "WH-HZ01", "owner_code": "TONGDAO", "customer": "CUST-TAOBAO"}


async def push_only_flow(hub: HubRuntime, name: str, connector: str) -> None:
    assert hub.store and hub.client
    flow = parse_flow({"name": name, "sources": [{"connector": connector}],
                       "targets": {"wms": "demo-wms", "erp": "demo-erp"}, "context": CONTEXT,
                       "schedule": {"webhooks": True}})
    await FlowOps(hub.client, hub.store, hub.settings.task_queue, "test").add(flow)


async def test_shopify_webhooks_feed_a_push_only_flow(hub: HubRuntime) -> None:
    systems, _ = setup_systems(hub, orders=2, run_id="mp1", malformed_per_shop=0)
    token, secret, shop = "shpat_push", "shpss_push_secret", "push-shop"
    sim = ShopifySimulator(stores={token: f"{shop}.myshopify.com"}, client_secret=secret, orders_per_shop=0, seed=3)
    server = BackgroundServer(sim.app).start()
    assert hub.store
    try:
        register(hub.store, Registration(name="sf-push", kind="shopify", settings={
            "base_url": server.base_url, "api_version": "2025-10", "shop": shop},
            secrets={"access_token": token, "client_secret": secret}), "test")
        await push_only_flow(hub, "shopify-pushed", "sf-push")
        ids = sim.add_orders(token, 3, lines=1)
        url = hub.settings.callback_url("sf-push")
        hooks = sim.webhooks()
        assert hooks, "the simulator queued orders/create webhooks"
        async with httpx.AsyncClient() as http:  # a forged delivery first
            forged = await http.post(url, content=hooks[0]["body"],
                                     headers={**hooks[0]["headers"], "X-Shopify-Hmac-Sha256": "Zm9yZ2Vk"})
            assert forged.status_code == 401
        delivered = 0
        for _ in range(10):  # as Shopify does, undelivered ones (a 503 while the hub is busy) are sent again
            delivered += await asyncio.to_thread(sim.flush_webhooks, url)
            if not sim.webhooks():
                break
            await asyncio.sleep(0.5)
        assert delivered >= len(hooks) and not sim.webhooks()
        codes = [hub_code(order_key("shopify", shop, i)) for i in ids]
        await wait_for(lambda: all(systems.wms.status_of(c) is not None for c in codes))
        await wait_for(lambda: all(sim.writebacks(i) for i in ids))
        # a redelivery of the same webhooks changes nothing
        for hook in hooks:
            async with httpx.AsyncClient() as http:
                assert (await http.post(url, content=hook["body"], headers=hook["headers"])).status_code == 200
        await asyncio.sleep(1.0)
        assert all(len(sim.writebacks(i)) == 1 for i in ids)
        assert systems.wms.state()["duplicates"] == 0 and systems.erp.state()["duplicates"] == 0
    finally:
        server.stop()
        await systems.wms.aclose()
        systems.stop()


async def test_douyin_messages_feed_a_push_only_flow(hub: HubRuntime) -> None:
    systems, _ = setup_systems(hub, orders=2, run_id="mp2", malformed_per_shop=0)
    key, secret, token, shop_id = "dy-push-app", "dy-push-secret", "dy-push-token", "777001"
    sim = DouyinSimulator(apps={key: secret}, shops={token: shop_id}, orders_per_shop=0, seed=4)
    server = BackgroundServer(sim.app).start()
    assert hub.store
    try:
        register(hub.store, Registration(name="dy-push", kind="douyin", settings={
            "base_url": server.base_url, "app_key": key, "shop_id": shop_id},
            secrets={"app_secret": secret, "access_token": token}), "test")
        await push_only_flow(hub, "douyin-pushed", "dy-push")
        ids = sim.add_orders(token, 2, lines=1)
        url = hub.settings.callback_url("dy-push")
        async with httpx.AsyncClient() as http:
            forged = await http.post(url, content=b'[{"tag":"100","msg_id":"x","data":"{}"}]',
                                     headers={"app-id": key, "event-sign": "0" * 32})
            assert forged.status_code == 401
        delivered = 0
        for _ in range(10):  # undelivered pushes stay queued and are sent again
            sent = await asyncio.to_thread(sim.deliver_pushes, url)
            delivered += sent
            if delivered >= 1 and sent == 0:  # nothing left queued
                break
            await asyncio.sleep(0.2)
        assert delivered >= 1
        codes = [hub_code(order_key("douyin", shop_id, i)) for i in ids]
        await wait_for(lambda: all(systems.wms.status_of(c) is not None for c in codes))
        await wait_for(lambda: all(sim.writebacks(i) for i in ids))
        assert systems.wms.state()["duplicates"] == 0
    finally:
        server.stop()
        await systems.wms.aclose()
        systems.stop()
