"""``make run``: PostgreSQL (DATABASE_URL or embedded), the emulators, every service that
exists, the demo workspace provisioned; Ctrl-C stops everything and leaves no process."""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys

from devstack import config, planning, processes, provision
from devstack.processes import LOGS
from runtime.embedded_postgres import EmbeddedPostgres


async def run(once: bool, llm: bool = False) -> int:
    """Starts the stack; with ``once`` stops right after it is up (a smoke check); with
    ``llm`` the scripted model emulator answers the edge's LLM mode."""
    demo = config.load()
    postgres = EmbeddedPostgres(config.DATA_DIR / "pg")
    database_url = postgres.url()
    print("PostgreSQL:", "embedded (.data/pg)" if postgres.embedded else "DATABASE_URL", flush=True)
    children = planning.plan(
        demo,
        database_url,
        service_database_urls=await planning.service_database_urls(database_url),
        llm=llm,
    )
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stopping.set)
    status = 0
    try:
        for child in children:
            await processes.start(child)
            await processes.wait_ready(child)
            print(f"  {child.name:<18} {child.address}", flush=True)
        notes = await provision.provision(demo, children_names={c.name for c in children})
        console = next((c for c in children if c.name == "console"), None)
        if console is not None:
            notes.append(
                f"Owner console: {console.address} (sign in on the local identity provider as "
                "admin-a or admin-b; two admins approve a loosened bound)"
            )
        print("\n".join(["", *notes]), flush=True)
        if once:
            return 0
        print(f"\nAll up; logs in {LOGS}. Ctrl-C stops everything.", flush=True)
        waiters = [asyncio.create_task(c.process.wait()) for c in children if c.process]
        stop_wait = asyncio.create_task(stopping.wait())
        done, _ = await asyncio.wait([stop_wait, *waiters], return_when=asyncio.FIRST_COMPLETED)
        if stop_wait not in done:
            exited = [c.name for c in children if c.process and c.process.returncode is not None]
            print(f"stopping: {', '.join(exited)} exited", flush=True)
            status = 1
        stop_wait.cancel()
        for waiter in waiters:
            waiter.cancel()
    except Exception as error:
        print(f"start-up failed: {error}", file=sys.stderr, flush=True)
        for child in children:
            if child.process and child.process.returncode is not None:
                print(
                    f"--- last lines of {LOGS / child.name}.log ---\n{processes.tail(child)}",
                    flush=True,
                )
        status = 1
    finally:
        print("stopping...", flush=True)
        await processes.stop(children)
        postgres.stop()
        print("stopped.", flush=True)
    return status


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--once", action="store_true", help="start, provision, then stop")
    parser.add_argument(
        "--llm", action="store_true", help="LLM mode against the scripted model emulator"
    )
    args = parser.parse_args()
    raise SystemExit(asyncio.run(run(args.once, args.llm)))


if __name__ == "__main__":
    main()
