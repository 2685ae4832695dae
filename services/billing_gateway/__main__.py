"""``python -m billing_gateway [serve|migrate]``."""

from __future__ import annotations

from billing_gateway.service import BillingGatewayService
from billing_gateway.settings import BillingGatewaySettings
from runtime import server

if __name__ == "__main__":
    server.main(BillingGatewaySettings, BillingGatewayService)
