"""Prints a credential of the local stack for hand-made calls (grpcurl):
``python -m devstack.token edge`` a service credential (10 minutes), ``--admin NAME`` an
admin credential (1 hour). The keys are the local stack's: each service's private key in
.data/service-keys/<service>.pem, the admin key in .data/local-keys.env."""

from __future__ import annotations

import argparse

from devstack import config
from runtime import auth, service_auth


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("service", nargs="?", default="edge", help="calling service's name")
    parser.add_argument("--admin", metavar="NAME", help="an admin credential instead")
    arguments = parser.parse_args()
    keys = config.local_keys()
    if arguments.admin:
        print(auth.issue_admin_token(keys["ADMIN_TOKEN_SECRET"], arguments.admin))
    else:
        signing_keys = config.service_keys()
        if arguments.service not in signing_keys:
            parser.error(f"no such service: choose from {', '.join(signing_keys)}")
        print(service_auth.issue(signing_keys[arguments.service]))


if __name__ == "__main__":
    main()
