"""Decisions on an order before release: the flow's rule set (audit, approval, routing, promotions)
and the people who approve, reject or edit it (Temporal updates on the order workflow)."""
