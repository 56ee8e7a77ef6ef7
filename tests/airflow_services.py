"""Airflow's services as processes on loopback, configured from docker-compose.yaml: what users run,
without a Docker engine. Used by ``test_airflow_services.py``; also runnable by hand:

    python tests/airflow_services.py WORKDIR     (starts everything, prints the UI's address, waits)

The compose file's common environment is taken as it is; only what names other containers (the
database host, the api-server's URL) and paths inside the image are mapped to this machine.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
SERVICES = ("api-server", "scheduler", "dag-processor", "triggerer")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def postgres_bin() -> Path | None:
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"))
    return found[-1].parent if found else None


def start_postgres() -> tuple[str, subprocess.Popen, Path]:
    """A private PostgreSQL cluster on loopback (as the ``postgres`` user when run as root, in a folder
    that user can reach); its URL, process and folder."""
    import tempfile

    bindir, port = postgres_bin(), free_port()
    work = Path(tempfile.mkdtemp(prefix="deeploc-pg-"))
    data = work / "pgdata"
    as_user = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    if os.geteuid() == 0:
        shutil.chown(work, "postgres")
    subprocess.run([*as_user, str(bindir / "initdb"), "-D", str(data), "-U", "airflow", "--auth=trust"],
                   check=True, capture_output=True)
    proc = subprocess.Popen([*as_user, str(bindir / "postgres"), "-D", str(data), "-p", str(port), "-h", "127.0.0.1",
                             "-k", str(work)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(100):
        if subprocess.run([*as_user, str(bindir / "psql"), "-h", "127.0.0.1", "-p", str(port), "-U", "airflow",
                           "-d", "postgres", "-c", "create database airflow"], capture_output=True).returncode == 0:
            return f"postgresql+psycopg2://airflow@127.0.0.1:{port}/airflow", proc, work
        time.sleep(0.3)
    raise RuntimeError("PostgreSQL did not start")


def environment(work: Path, db_url: str, api_port: int, data: dict[str, str]) -> dict[str, str]:
    """docker-compose.yaml's common environment, mapped onto this machine."""
    compose = yaml.safe_load((REPO / "docker-compose.yaml").read_text())
    env = {k: str(v) for k, v in compose["x-airflow-common"]["environment"].items()}
    secrets = work / "secrets"
    mapped = {"/opt/airflow/secrets": str(secrets), "http://airflow-apiserver:8080": f"http://127.0.0.1:{api_port}",
              "/opt/deeploc": str(REPO)}
    for key, value in env.items():
        for inside, here in mapped.items():
            value = value.replace(inside, here)
        env[key] = value
    for key, value in list(env.items()):  # ${VAR:-default} -> default (compose's own substitution)
        if value.startswith("${") and ":-" in value:
            env[key] = value.split(":-", 1)[1].rstrip("}")
    env.update({
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": db_url,
        "AIRFLOW_HOME": str(work / "airflow"), "AIRFLOW__CORE__DAGS_FOLDER": str(REPO / "dags"),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(REPO / "plugins"), "AIRFLOW__LOGGING__BASE_LOG_FOLDER": str(work / "logs"),
        "AIRFLOW__API__HOST": "127.0.0.1", "AIRFLOW__API__PORT": str(api_port), "AIRFLOW__API__WORKERS": "1",
        "AIRFLOW__SCHEDULER__SCHEDULER_HEALTH_CHECK_SERVER_PORT": str(free_port()),
        "AIRFLOW__SCHEDULER__SCHEDULER_HEALTH_CHECK_SERVER_HOST": "127.0.0.1",
        "AIRFLOW__CORE__PARALLELISM": "2", "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
        "PYTHONPATH": str(REPO / "plugins"), "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
        "AIRFLOW_CONN_AWS_DEFAULT": "aws://", "DEEPLOC_AWS": "", **data})
    return {**{k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "DEEPLOC"))}, **env}


class Services:
    """Init, then the four services; ``api`` calls the REST API with a token of the compose file's user."""

    def __init__(self, work: Path, data: dict[str, str]):
        self.work, self.procs = work, []
        self.db_url, pg, self.pg_dir = start_postgres()
        self.procs.append(pg)
        self.port = free_port()
        self.env = environment(work, self.db_url, self.port, data)
        airflow = [sys.executable, "-m", "airflow"]
        subprocess.run([sys.executable, "-m", "deeploc_airflow.deploy_init", "--secrets", str(work / "secrets"),
                        "--folder", str(work / "logs")], env=self.env, check=True, capture_output=True)
        subprocess.run([*airflow, "db", "migrate"], env=self.env, check=True, capture_output=True, timeout=600)
        (work / "service-logs").mkdir(exist_ok=True)
        for name in SERVICES:
            log = open(work / "service-logs" / f"{name}.log", "w")
            self.procs.append(subprocess.Popen([*airflow, name], env=self.env, stdout=log, stderr=log))
        self.token = None
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            try:
                self.token = self._login()
                break
            except (urllib.error.URLError, ConnectionError):
                time.sleep(0.5)
        if self.token is None:
            raise RuntimeError("the api-server did not answer in 5 minutes")

    def password(self) -> str:
        """The compose file's user's password, which the init step generated."""
        return json.loads((self.work / "secrets" / "passwords.json").read_text())["airflow"]

    def _login(self) -> str:
        req = urllib.request.Request(f"http://127.0.0.1:{self.port}/auth/token", method="POST",
                                     data=json.dumps({"username": "airflow", "password": self.password()}).encode(),
                                     headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=30) as resp:
            return json.loads(resp.read())["access_token"]

    def api(self, method: str, path: str, body: dict | None = None):
        req = urllib.request.Request(f"http://127.0.0.1:{self.port}/api/v2{path}", method=method,
                                     data=None if body is None else json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json", "Authorization": f"Bearer {self.token}"})
        with urllib.request.urlopen(req, timeout=60) as resp:
            return json.loads(resp.read() or b"null")

    def stop(self) -> None:
        for p in reversed(self.procs):
            p.terminate()
        for p in self.procs:
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                p.kill()
        shutil.rmtree(self.pg_dir, ignore_errors=True)


if __name__ == "__main__":
    s = Services(Path(sys.argv[1]), {})
    print(f"Airflow UI: http://127.0.0.1:{s.port} (user airflow, password in {sys.argv[1]}/secrets/passwords.json)")
    try:
        while True:
            time.sleep(60)
    finally:
        s.stop()
