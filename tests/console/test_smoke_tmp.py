from __future__ import annotations

from tests.console.conftest import Console, screenshot


async def test_sign_in(console: Console) -> None:
    page = await console.signed_in("admin-a")
    assert "admin-a" in await page.content()
    await screenshot(page, "escalations")
    for name in ("bounds", "stripe", "audit", "recovery", "outcomes", "messages"):
        await page.goto(f"{console.url}/{name}")
        await screenshot(page, name)
        print(name, await page.locator("main").inner_text())
