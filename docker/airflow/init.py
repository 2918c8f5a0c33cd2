"""airflow-init (docker-compose.yaml): migrate the metadata database, then write the simple auth
manager's passwords file from DC2_ADMIN_PASSWORD.

Why a script: the password comes in this one container's environment and goes into the file
without ever being part of a command line or a shell string (`bash -c` text is visible in `ps`,
in `docker inspect` and in the compose file). The file is made 0600 under a temporary name and
renamed into place, so it is never readable by anyone but the Airflow uid, not even for a moment.
It is rewritten at every `docker compose up`: changing the variable changes the password.
Compose only checks that each secret is set; this refuses weak ones before anything starts (every
Airflow service waits for airflow-init to succeed).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

PASSWORD_VAR = "DC2_ADMIN_PASSWORD"
MIN_PASSWORD = 12
MIN_SECRET = 32
# the Airflow settings docker-compose.yaml fills from .env, by the variable a person sets
SECRETS = {
    "AIRFLOW__API_AUTH__JWT_SECRET": "DC2_JWT_SECRET",
    "AIRFLOW__API__SECRET_KEY": "DC2_API_SECRET_KEY",
}


def weak_secrets(env: dict[str, str], password: str) -> list[str]:
    """Why each secret is too weak to start with (Compose only checks that they are set)."""
    from cryptography.fernet import Fernet

    problems = []
    for setting, var in SECRETS.items():
        if len(env.get(setting, "")) < MIN_SECRET:
            problems.append(f"{var} is shorter than {MIN_SECRET} characters (openssl rand -hex 32)")
    try:
        Fernet(env.get("AIRFLOW__CORE__FERNET_KEY", ""))
    except ValueError:
        problems.append("DC2_FERNET_KEY is not a Fernet key (32 url-safe base64-encoded bytes)")
    if len(password.strip()) < MIN_PASSWORD:
        problems.append(f"{PASSWORD_VAR} is shorter than {MIN_PASSWORD} characters")
    return problems


def users(spec: str) -> list[str]:
    """The user names of `[core] simple_auth_manager_users` ("name:role,...")."""
    return [item.split(":", 1)[0].strip() for item in spec.split(",") if item.strip()]


def write_private(path: Path, text: str) -> None:
    """`text` into `path`, mode 0600 from creation (O_EXCL, no link followed), renamed into place."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    try:
        with os.fdopen(fd, "w") as out:
            out.write(text)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def main() -> int:
    os.umask(0o077)
    password = os.environ.pop(PASSWORD_VAR, "")  # popped: the airflow commands below never see it
    if problems := weak_secrets(dict(os.environ), password):
        for problem in problems:
            print(f"airflow-init: {problem}; make .env as README.md (Docker) says", file=sys.stderr)
        return 2
    names = users(os.environ.get("AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS", ""))
    if len(names) != 1:
        print("airflow-init: AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS must name exactly one user "
              f"(it names {names}): {PASSWORD_VAR} is that user's password", file=sys.stderr)
        return 2
    path = Path(os.environ["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE"])
    subprocess.run(["airflow", "db", "migrate"], check=True)
    write_private(path, json.dumps({names[0]: password}) + "\n")
    print(f"airflow-init: the password of {names[0]!r} is in {path} (mode 0600)", flush=True)
    subprocess.run(["airflow", "version"], check=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
