"""Prints a credential of the local stack for hand-made calls (grpcurl):
``python -m devstack.token edge`` a service credential (10 minutes), ``--admin NAME`` an
admin credential (1 hour) signed by the local stack's identity provider (.data/admin-idp).
Each service's private key is in .data/service-keys/<service>.pem."""

from __future__ import annotations

import argparse

from devstack import config
from runtime import service_auth


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("service", nargs="?", default="edge", help="calling service's name")
    parser.add_argument("--admin", metavar="NAME", help="an admin credential instead")
    arguments = parser.parse_args()
    if arguments.admin:
        print(config.admin_provider().issue(arguments.admin))
    else:
        signing_keys = config.service_keys()
        if arguments.service not in signing_keys:
            parser.error(f"no such service: choose from {', '.join(signing_keys)}")
        print(service_auth.issue(signing_keys[arguments.service]))


if __name__ == "__main__":
    main()
