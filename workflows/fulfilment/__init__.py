"""After a package ships: the ERP sales outbound, the shipment voucher (and its reversal), the
notification. Called by the order workflow (:mod:`workflows.order.cash`)."""
