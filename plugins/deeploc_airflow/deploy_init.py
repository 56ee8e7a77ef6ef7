"""What a fresh Airflow deployment needs before its services start (the compose file's init service,
and the services test): secrets every service shares, folders they can write, and the admin's password.

    python -m deeploc_airflow.deploy_init --secrets DIR --uid UID [--folder DIR ...]

Every service reads the same JWT secret (``[api_auth] jwt_secret``), API secret key (``[api] secret_key``:
the log server and the api-server sign and check log requests with it) and Fernet key through
``AIRFLOW__API_AUTH__JWT_SECRET_CMD``, ``AIRFLOW__API__SECRET_KEY_CMD`` and ``AIRFLOW__CORE__FERNET_KEY_CMD``:
a component with a secret of its own would reject the others' tokens, or fail to show task logs. They are made once and kept (re-running changes nothing).
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import secrets

FILES = {"jwt_secret": lambda: secrets.token_urlsafe(48),
         "api_secret_key": lambda: secrets.token_urlsafe(48),
         # a Fernet key is 32 random bytes, url-safe base64 (what cryptography's Fernet.generate_key makes)
         "fernet_key": lambda: base64.urlsafe_b64encode(os.urandom(32)).decode(),
         "passwords.json": lambda: json.dumps({"airflow": secrets.token_urlsafe(12)})}


def prepare(secrets_dir: str, uid: int, folders: list[str]) -> dict[str, str]:
    """Create what is missing; return the paths of the secret files."""
    os.makedirs(secrets_dir, exist_ok=True)
    paths = {}
    for name, make in FILES.items():
        path = paths[name] = os.path.join(secrets_dir, name)
        if not os.path.exists(path):
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as f:
                f.write(make())
    for folder in folders:
        os.makedirs(folder, exist_ok=True)
    if os.geteuid() == 0:  # the services run as uid:0 (the official image's convention)
        for path in [*paths.values(), secrets_dir, *folders]:
            os.chown(path, uid, 0)
    return paths


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--secrets", required=True)
    ap.add_argument("--uid", type=int, default=50000)
    ap.add_argument("--folder", action="append", default=[], help="a folder the services write (bind mounts)")
    a = ap.parse_args()
    paths = prepare(a.secrets, a.uid, a.folder)
    with open(paths["passwords.json"]) as f:
        print(f"deeploc: the UI's user is 'airflow', password {json.load(f)['airflow']} (kept in {paths['passwords.json']})")


if __name__ == "__main__":
    main()
